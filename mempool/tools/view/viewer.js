// mempool view: draws the snapshots embedded in this page (see model.py for
// what each field means).  Plain JavaScript and canvas, no library, no
// network: the page works from file://.
'use strict';
(function () {
  const T0 = performance.now();
  const errors = [];

  function showError(msg) {
    errors.push(String(msg));
    const box = document.getElementById('errors');
    box.textContent = 'The viewer hit an error (please report it):\n' + errors.join('\n');
    box.className = 'shown';
    document.body.dataset.errors = String(errors.length);
  }
  window.addEventListener('error', (e) => showError(e.message || e));

  // ------------------------------------------------------------ helpers --
  const TYPES = { u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array,
                  u32: Uint32Array, i32: Int32Array, f64: Float64Array };
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('this viewer needs a little-endian machine');
  }

  // A column of model.py's column(): base64 of a little-endian typed array.
  function decode(col) {
    let bytes;
    if (typeof Uint8Array.fromBase64 === 'function') {
      bytes = Uint8Array.fromBase64(col.b);
    } else {
      const bin = atob(col.b);
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    }
    const T = TYPES[col.t];
    if (!T) throw new Error('unknown column type ' + col.t);
    const out = new T(bytes.buffer, bytes.byteOffset, col.n);
    return out;
  }

  // x with one decimal, ties to even as Python's format() (toFixed takes
  // the larger: 781.25 would show 781.3 where the summary says 781.2).
  function fixed1(x) {
    const t = x * 10;
    if (!Number.isInteger(t) && Number.isInteger(t * 2)) {
      const r = Math.floor(t);
      return ((r % 2 === 0 ? r : r + 1) / 10).toFixed(1);
    }
    return x.toFixed(1);
  }

  // Bytes as Python's mempool.errors.format_bytes writes them.
  function fmtBytes(n) {
    if (n === null || n === undefined) return 'unknown';
    let v = n;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    for (let i = 0; i < units.length; i++) {
      if (Math.abs(v) < 1024 || i === units.length - 1) {
        return i === 0 ? Math.trunc(v) + ' B' : fixed1(v) + ' ' + units[i];
      }
      v /= 1024;
    }
    return String(n);
  }
  function fmtInt(n) { return Number(n).toLocaleString('en-US'); }
  function fmtTime(us) {
    const a = Math.abs(us);
    if (a < 1000) return us.toFixed(0) + ' µs';
    if (a < 1e6) return (us / 1e3).toFixed(a < 1e4 ? 2 : 1) + ' ms';
    if (a < 6e7) return (us / 1e6).toFixed(a < 1e7 ? 3 : 2) + ' s';
    return (us / 6e7).toFixed(1) + ' min';
  }
  function fmtPct(x) { return (100 * x).toFixed(x < 0.1 ? 1 : 0) + '%'; }
  function hex(a) { return '0x' + Number(a).toString(16); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;',
                                                   '"': '&quot;', "'": '&#39;' })[c]);
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'html') e.innerHTML = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  // A shown figure: its exact value in data-value (the browser test reads it).
  function fig(name, value, text) {
    return el('span', { class: 'fig', 'data-fig': name, 'data-value': value === null ? '' : String(value) },
              text === undefined ? fmtBytes(value) : text);
  }
  function upperBound(arr, x, lo, hi) {   // first index in [lo, hi) with arr[i] > x
    while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] <= x) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function lowerBound(arr, x, lo, hi) {   // first index in [lo, hi) with arr[i] >= x
    while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function niceStep(span, target) {
    const raw = span / Math.max(1, target);
    const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function niceBytesStep(max, target) {
    const raw = max / Math.max(1, target);
    let unit = 1;
    while (unit * 1024 <= raw) unit *= 1024;
    return niceStep(raw / unit, 1) * unit;
  }
  function setupCanvas(canvas, w, h) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = w + 'px';
    canvas.style.height = h + 'px';
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  // ------------------------------------------------------------ colours --
  const SITE_COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948',
                        '#b07aa1', '#ff9da7', '#9c755f', '#a0cbe8', '#ffbe7d', '#8cd17d',
                        '#86bcb6', '#f1ce63', '#d4a6c8', '#fabfd2', '#d7b5a6', '#499894'];
  const UNKNOWN_COLOUR = '#bab0ac', NOGIL_COLOUR = '#6f6f6f', OTHER_COLOUR = '#dcdcdc';
  const STATE_COLOURS = { live: '#4e79a7', cached: '#f28e2b', free: '#e15759', released: '#f1f2f4',
                          meshed: '#b07aa1', buffer: '#59a14f', pinned: '#1e5c2c', unused: '#c4c4c4' };
  const STATE_TEXT = {
    live: 'live: an array\'s data', cached: 'cached in a thread', free: 'free hole (resident)',
    released: 'given back to the OS', meshed: 'meshed (pages shared)', buffer: 'movable buffer',
    pinned: 'pinned buffer', unused: 'slab tail' };
  const NOTLIVE_COLOUR = '#e9ecef';
  const EVENT_KINDS = {   // marker colour, text, drawn as a line across the plot
    exhausted: ['#c81e1e', 'PoolExhausted: a request refused', true],
    error: ['#111111', 'bad pointer caught', true],
    limit: ['#d4a000', 'resident limit hit: free pages given back', true],
    mesh: ['#b07aa1', 'slabs meshed', false],
    move: ['#f28e2b', 'buffer moved by defragment()', false],
    arena_unmap: ['#7fa7d0', 'arena unmapped', false],
    direct_unmap: ['#8cd17d', 'direct mapping unmapped', false],
    purge: ['#9c755f', 'pages given back (purge)', false],
    arena_map: ['#2f5f8f', 'arena mapped', false],
    direct_map: ['#3d8b37', 'direct mapping mapped', false],
  };
  const KIND_ORDER = Object.keys(EVENT_KINDS);

  // --------------------------------------------------------------- data --
  const CHECKPOINT = 4096;

  class Data {
    constructor(m) {
      this.m = m;
      this.states = m.block_states;
      this.sites = m.sites;
      this.bands = m.bands.bands;
      this.siteOfStack = decode(m.sites.site_of_stack);
      this.bandOfSite = decode(m.bands.band_of_site);
      const st = m.state;
      this.rows = { segment: decode(st.rows.segment), first: decode(st.rows.first),
                    count: decode(st.rows.count) };
      this.blocks = {};
      for (const k of Object.keys(st.blocks)) this.blocks[k] = decode(st.blocks[k]);
      this.segs = {};
      for (const k of Object.keys(st.segments)) this.segs[k] = decode(st.segments[k]);
      this.siteLabels();
      const h = m.history;
      this.h = h;
      this.n = h ? h.events : 0;
      if (h) this.prepareHistory(h);
    }

    siteOf(stack) {   // a stack id (-2..) -> its site (see model.sites)
      const i = stack + 2;
      return i >= 0 && i < this.siteOfStack.length ? this.siteOfStack[i] : 0;
    }

    bandOf(stack) { return this.bandOfSite[this.siteOf(stack)]; }

    frames(stack) {
      if (stack < 0 || stack >= this.sites.stacks.length) return [];
      const f = this.sites.frames, s = this.sites.strings, prog = this.sites.program;
      return this.sites.stacks[stack].map((id) => ({
        file: s[f.file[id]], short: this.sites.short[f.file[id]], line: f.line[id],
        func: s[f.function[id]], lib: !!f.library[id], prog: !!prog[id] }));
    }

    siteLabel(stack) { return this.sites.label[this.siteOf(stack)]; }

    siteLabels() {
      this.bandLabel = this.bands.map((b) => (b.site === null ? 'other sites (' + b.sites + ')'
                                                               : this.sites.label[b.site]));
      // colours by rank (the largest peaks get the first, most distinct ones)
      const byRank = this.bands.map((b, i) => i).sort((x, y) => this.bands[x].rank - this.bands[y].rank);
      this.bandColour = new Array(this.bands.length);
      let c = 0;
      for (const i of byRank) {
        const b = this.bands[i];
        this.bandColour[i] = b.site === null ? OTHER_COLOUR : b.site === 0 ? UNKNOWN_COLOUR :
          b.site === 1 ? NOGIL_COLOUR : SITE_COLOURS[c++ % SITE_COLOURS.length];
      }
      this.legendOrder = byRank;
    }

    prepareHistory(h) {
      const n = this.n, nb = this.bands.length;
      this.t = decode(h.t_us);
      const a = h.allocs;
      const al = this.al = { start: decode(a.start), end: decode(a.end), address: decode(a.address),
                             size: decode(a.size), stack: decode(a.stack) };
      const A = al.start.length;
      const abands = this.allocBand = new Uint16Array(A);
      const delta = new Float64Array(n);
      const startOf = this.startOwner = new Int32Array(n).fill(-1);
      const endOf = this.endOwner = new Int32Array(n).fill(-1);
      const pre = new Float64Array(nb);
      let base = 0;
      for (let k = 0; k < A; k++) {
        const s = al.start[k], e = al.end[k], z = al.size[k];
        const b = abands[k] = this.bandOf(al.stack[k]);
        if (s < 0) { pre[b] += z; base += z; } else { delta[s] += z; startOf[s] = k; }
        if (e < n) { delta[e] -= z; endOf[e] = k; }
      }
      this.base = base;
      const live = this.liveAfter = new Float64Array(n);
      let acc = base, peak = -1, peakV = base;
      for (let e = 0; e < n; e++) {
        acc += delta[e];
        live[e] = acc;
        if (acc > peakV) { peakV = acc; peak = e; }
      }
      this.peak = peak;
      this.peakBytes = peakV;
      // band sums before every CHECKPOINT-th event
      const ncp = Math.floor(n / CHECKPOINT) + 1;
      const cps = this.checkpoints = new Float64Array(ncp * nb);
      const sums = Float64Array.from(pre);
      cps.set(sums, 0);
      for (let e = 0; e < n; e++) {
        this.apply(sums, e);
        if ((e + 1) % CHECKPOINT === 0) cps.set(sums, ((e + 1) / CHECKPOINT) * nb);
      }
      const pe = h.pool_events;
      this.pe = { at: decode(pe.at), t: decode(pe.t_us), kind: decode(pe.kind),
                  address: decode(pe.address), size: decode(pe.size), arg: decode(pe.arg),
                  stack: decode(pe.stack), kinds: pe.kinds };
      this.moves = decode(h.moves);
      this.regions = h.regions;
    }

    apply(sums, e) {   // event e into per-band sums
      const k1 = this.endOwner[e], k2 = this.startOwner[e];
      if (k1 >= 0) sums[this.allocBand[k1]] -= this.al.size[k1];
      if (k2 >= 0) sums[this.allocBand[k2]] += this.al.size[k2];
    }

    liveAt(m) { return m < 0 ? this.base : this.liveAfter[Math.min(m, this.n - 1)]; }

    // Per-band live bytes at each of `moments` (non-decreasing), row-major.
    bandSums(moments) {
      const nb = this.bands.length, out = new Float64Array(moments.length * nb);
      if (!moments.length) return out;
      const j = Math.floor((Math.max(moments[0], -1) + 1) / CHECKPOINT);
      const sums = this.checkpoints.slice(j * nb, (j + 1) * nb);
      let e = j * CHECKPOINT;
      for (let i = 0; i < moments.length; i++) {
        const m = moments[i];
        while (e <= m) this.apply(sums, e++);
        out.set(sums, i * nb);
      }
      return out;
    }

    isLive(k, m) { return this.al.start[k] <= m && this.al.end[k] > m; }

    // Call sites by live bytes at moment m: [{stack, bytes, blocks}].
    topSitesAt(m) {
      const by = new Map(), al = this.al;
      for (let k = 0; k < al.start.length; k++) {
        if (al.start[k] > m) break;
        if (al.end[k] <= m) continue;
        this.addSite(by, al.stack[k], al.size[k]);
      }
      return this.sortSites(by);
    }

    // Call sites of the snapshot's live blocks (live, buffer, pinned).
    topSitesSnapshot() {
      const by = new Map(), b = this.blocks, held = this.heldStates();
      for (let i = 0; i < b.state.length; i++) {
        if (!held[b.state[i]]) continue;
        this.addSite(by, b.site[i], b.requested[i]);
      }
      return this.sortSites(by);
    }

    heldStates() {
      return this.states.map((s) => s === 'live' || s === 'buffer' || s === 'pinned');
    }

    addSite(by, stack, bytes) {   // one live block into per-site sums
      const site = this.siteOf(stack);
      let r = by.get(site);
      if (!r) by.set(site, r = { site, bytes: 0, blocks: 0, stack, biggest: -1 });
      r.bytes += bytes;
      r.blocks += 1;
      if (bytes > r.biggest) { r.biggest = bytes; r.stack = stack; }
    }

    sortSites(by) {
      return [...by.values()].sort((x, y) => (y.bytes - x.bytes) || (x.site - y.site));
    }

    timeOf(m) { return m < 0 || !this.n ? 0 : this.t[Math.min(m, this.n - 1)]; }
  }

  // ------------------------------------------------------------ tooltip --
  const tip = document.getElementById('tip');
  function showTip(html, ev) {
    tip.innerHTML = html;
    tip.style.display = 'block';
    const r = tip.getBoundingClientRect();
    let x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + r.width > window.innerWidth - 4) x = Math.max(4, ev.clientX - r.width - 14);
    if (y + r.height > window.innerHeight - 4) y = Math.max(4, ev.clientY - r.height - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function hideTip() { tip.style.display = 'none'; }
  function stackHtml(d, stack) {
    const fr = d.frames(stack);
    if (!fr.length) return '<div class="dim">' + esc(d.siteLabel(stack)) + '</div>';
    return '<div class="fr">' + fr.map((f) =>
      '<span class="' + (f.prog ? '' : 'lib') + '">' + esc(f.short + ':' + f.line) + '  ' +
      esc(f.func) + '</span>').join('\n') + '</div>';
  }

  function siteCount(d, site) {
    const n = d.sites.nstacks[site];
    return n > 1 ? '<div class="dim">' + n + ' different stacks reach this line</div>' : '';
  }
  function siteStackHtml(d, site) {
    return stackHtml(d, d.sites.stack[site]) + siteCount(d, site);
  }

  // ----------------------------------------------------------- timeline --
  const PAD_L = 64, PAD_R = 10, LANE = 16, PAD_T = LANE + 4, PAD_B = 30, PLOT_H = 230;
  const ALLOC_BANDS_MAX = 1500;

  class Timeline {
    constructor(panel, host) {
      this.p = panel;
      this.d = panel.d;
      this.mode = 'events';
      this.view = null;
      const d = this.d;
      this.wrap = el('div', { class: 'canvas-wrap' });
      this.base = el('canvas', { class: 'timeline', 'data-role': 'timeline' });
      this.over = el('canvas', { style: 'position:absolute;left:0;top:0;cursor:crosshair' });
      this.wrap.append(this.base, this.over);
      this.btnEvents = el('button', { class: 'on', onclick: () => this.setMode('events') }, 'events');
      this.btnTime = el('button', { onclick: () => this.setMode('time') }, 'time');
      this.btnOut = el('button', { onclick: () => this.reset(), disabled: '' }, 'zoom out');
      this.info = el('span', { class: 'note' });
      host.append(el('h3', {}, 'Active memory timeline',
                     el('span', { class: 'tools' }, el('span', { class: 'note' }, 'x:'),
                        this.btnEvents, this.btnTime, this.btnOut),
                     this.info));
      host.append(this.wrap);
      this.legend = el('div', { class: 'legend' });
      this.kindLegend = el('div', { class: 'legend' });
      host.append(this.legend, this.kindLegend,
                  el('div', { class: 'hint' }, 'Bands: live bytes of each call site (the ' +
                     d.bands.filter((b) => b.site !== null).length + ' largest at their peak, the ' +
                     'longest-lived at the bottom; the rest as "other"); zoomed in to under ' +
                     ALLOC_BANDS_MAX + ' blocks, one band per block. Each pixel column shows ' +
                     'the moment of its highest live bytes; the thin line, its lowest. ' +
                     'Drag to zoom, click to pick a moment, double-click to zoom out.'));
      this.drawLegend();
      this.bindMouse();
    }

    drawLegend() {
      const d = this.d;
      this.legend.replaceChildren(...d.legendOrder.map((i) => [d.bands[i], i]).map(([b, i]) => el('span', { class: 'item',
        title: b.site === null ? '' : d.sites.file[b.site] },
        el('span', { class: 'sw', style: 'background:' + d.bandColour[i] }),
        el('span', { class: 't' }, d.bandLabel[i] + (b.peak !== null ? ' (peak ' +
                                   fmtBytes(b.peak) + ')' : '')))));
      const present = new Set();
      if (d.pe) for (let i = 0; i < d.pe.kind.length; i++) present.add(d.pe.kinds[d.pe.kind[i]]);
      if (d.moves && d.moves.length) present.add('move');
      const counts = {};
      if (d.pe) for (let i = 0; i < d.pe.kind.length; i++) {
        const k = d.pe.kinds[d.pe.kind[i]];
        counts[k] = (counts[k] || 0) + 1;
      }
      if (d.moves) counts.move = d.moves.length;
      this.kindLegend.replaceChildren(el('span', { class: 'note hint' }, 'Pool events:'),
        ...(present.size ? KIND_ORDER.filter((k) => present.has(k)).map((k) =>
          el('span', { class: 'item' }, el('span', { class: 'sw', style: 'background:' +
            EVENT_KINDS[k][0] }), el('span', { class: 't' }, EVENT_KINDS[k][1] + ' ×' +
            fmtInt(counts[k] || 0)))) : [el('span', { class: 'hint' }, 'none recorded')]));
    }

    setMode(mode) {
      this.mode = mode;
      this.btnEvents.className = mode === 'events' ? 'on' : '';
      this.btnTime.className = mode === 'time' ? 'on' : '';
      this.view = null;
      this.render();
    }

    reset() { this.view = null; this.render(); }

    fullView() {
      const d = this.d;
      if (this.mode === 'time') {
        const t0 = d.t[0], t1 = d.t[d.n - 1];
        return { a: t0, b: Math.max(t1 + 1, t0 + 1) };
      }
      return { a: 0, b: d.n };
    }

    // [lo, hi) event ranges of the W pixel columns
    columnRanges(W) {
      const d = this.d, v = this.view, lo = new Int32Array(W), hi = new Int32Array(W);
      for (let c = 0; c < W; c++) {
        if (this.mode === 'time') {
          const ta = v.a + (c * (v.b - v.a)) / W, tb = v.a + ((c + 1) * (v.b - v.a)) / W;
          lo[c] = lowerBound(d.t, ta, 0, d.n);
          hi[c] = lowerBound(d.t, tb, lo[c], d.n);
        } else {
          lo[c] = Math.floor(v.a + (c * (v.b - v.a)) / W);
          hi[c] = Math.floor(v.a + ((c + 1) * (v.b - v.a)) / W);
        }
      }
      return [lo, hi];
    }

    xOfEvent(e) {   // x (in plot pixels, float) where event index e sits
      const v = this.view, W = this.W, d = this.d;
      if (this.mode === 'time') {
        const t = e < 0 ? d.t[0] : e >= d.n ? d.t[d.n - 1] + 1 : d.t[e];
        return ((t - v.a) / (v.b - v.a)) * W;
      }
      return ((e + 0.5 - v.a) / (v.b - v.a)) * W;
    }

    render() {
      const d = this.d;
      const width = Math.max(300, this.wrap.clientWidth || 600);
      const W = this.W = width - PAD_L - PAD_R;
      const H = PLOT_H;
      if (!this.view) this.view = this.fullView();
      const full = this.fullView();
      this.btnOut.disabled = this.view.a === full.a && this.view.b === full.b;
      const [lo, hi] = this.columnRanges(W);
      const mom = this.mom = new Int32Array(W), low = this.low = new Float64Array(W);
      for (let c = 0; c < W; c++) {
        if (hi[c] > lo[c]) {
          let best = lo[c], bv = d.liveAfter[lo[c]], lv = bv;
          for (let e = lo[c] + 1; e < hi[c]; e++) {
            const x = d.liveAfter[e];
            if (x > bv) { bv = x; best = e; }
            if (x < lv) lv = x;
          }
          mom[c] = best;
          low[c] = lv;
        } else {
          mom[c] = Math.max(lo[c] - 1, -1);
          low[c] = d.liveAt(mom[c]);
        }
      }
      this.colEvents = hi.map((x, i) => x - lo[i]);
      let ymax = 1;
      for (let c = 0; c < W; c++) ymax = Math.max(ymax, d.liveAt(mom[c]));
      const step = niceBytesStep(ymax, 4);
      ymax = Math.ceil((ymax * 1.04) / step) * step;
      this.ymax = ymax;
      // per-block bands when few blocks are in view
      const first = mom[0], last = mom[W - 1];
      const cand = [];
      const al = d.al;
      for (let k = 0; k < al.start.length && al.start[k] <= last; k++) {
        if (al.end[k] > first) {
          cand.push(k);
          if (cand.length > ALLOC_BANDS_MAX) break;
        }
      }
      this.perBlock = cand.length <= ALLOC_BANDS_MAX;
      this.cand = cand;
      if (!this.perBlock) this.sums = d.bandSums(mom);
      const total = d.n;
      this.info.textContent = (this.perBlock ? 'one band per block' : 'bands per call site') +
        ' · events ' + fmtInt(Math.max(0, Math.min(...[lo[0]]))) + '–' + fmtInt(hi[W - 1]) +
        ' of ' + fmtInt(total);
      const ctx = setupCanvas(this.base, width, PAD_T + H + PAD_B);
      setupCanvas(this.over, width, PAD_T + H + PAD_B);
      this.height = PAD_T + H + PAD_B;
      ctx.clearRect(0, 0, width, this.height);
      this.drawAxes(ctx, W, H);
      this.drawBands(ctx, W, H);
      this.drawMarkers(ctx, W, H);
      this.drawOverlay();
    }

    y(v) { return PAD_T + PLOT_H - (v / this.ymax) * PLOT_H; }

    drawAxes(ctx, W, H) {
      ctx.fillStyle = '#fbfcfd';
      ctx.fillRect(PAD_L, PAD_T, W, H);
      ctx.strokeStyle = '#e3e7eb';
      ctx.fillStyle = '#5b6673';
      ctx.font = '11px system-ui, sans-serif';
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      const step = niceBytesStep(this.ymax, 4);
      for (let v = 0; v <= this.ymax + 1e-9; v += step) {
        const y = Math.round(this.y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(PAD_L, y); ctx.lineTo(PAD_L + W, y); ctx.stroke();
        ctx.fillText(fmtBytes(v), PAD_L - 5, y);
      }
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      const v = this.view;
      const tstep = this.mode === 'time' ? niceStep(v.b - v.a, 7) : Math.max(1, niceStep(v.b - v.a, 7));
      let lastX = -1e9;
      const origin = this.mode === 'time' ? this.d.t[0] : 0;   // time ticks since the start
      for (let r = Math.ceil((v.a - origin) / tstep) * tstep; r + origin <= v.b; r += tstep) {
        const x = r + origin;
        const px = PAD_L + ((x - v.a) / (v.b - v.a)) * W;
        const text = this.mode === 'time' ? fmtTime(r) : fmtInt(x);
        const tw = ctx.measureText(text).width;
        if (px - tw / 2 < lastX + 8 || px + tw / 2 > PAD_L + W + PAD_R) continue;
        ctx.fillRect(Math.round(px), PAD_T + H, 1, 4);
        ctx.fillText(text, px, PAD_T + H + 6);
        lastX = px + tw / 2;
      }
      ctx.textAlign = 'left';
      ctx.fillText(this.mode === 'time' ? 'time since the recording started' : 'event',
                   PAD_L, PAD_T + H + 18);
    }

    drawBands(ctx, W, H) {
      const d = this.d, nb = d.bands.length, mom = this.mom;
      const paths = d.bandColour.map(() => new Path2D());
      const seps = new Path2D();
      if (this.perBlock) {
        const al = d.al, cand = this.cand;
        for (let c = 0; c < W; c++) {
          const m = mom[c];
          let acc = 0;
          const x = PAD_L + c;
          for (const k of cand) {
            if (al.start[k] > m || al.end[k] <= m) continue;
            const y1 = this.y(acc), y0 = this.y(acc + al.size[k]);
            paths[d.allocBand[k]].rect(x, y0, 1, y1 - y0);
            if (y1 - y0 >= 4) seps.rect(x, y0, 1, 1);
            acc += al.size[k];
          }
        }
      } else {
        const sums = this.sums;
        for (let c = 0; c < W; c++) {
          let acc = 0;
          const x = PAD_L + c;
          for (let b = 0; b < nb; b++) {
            const v = sums[c * nb + b];
            if (v <= 0) continue;
            const y1 = this.y(acc), y0 = this.y(acc + v);
            paths[b].rect(x, y0, 1, y1 - y0);
            acc += v;
          }
        }
      }
      paths.forEach((p, b) => { ctx.fillStyle = d.bandColour[b]; ctx.fill(p); });
      ctx.fillStyle = 'rgba(255,255,255,0.85)';
      ctx.fill(seps);
      // the lowest live bytes of each column, where it differs
      ctx.strokeStyle = 'rgba(20,30,40,0.55)';
      ctx.lineWidth = 1;
      ctx.beginPath();
      let pen = false;
      for (let c = 0; c < W; c++) {
        const top = d.liveAt(mom[c]);
        if (this.low[c] < top - 0.5) {
          const y = this.y(this.low[c]);
          if (!pen) ctx.moveTo(PAD_L + c, y); else ctx.lineTo(PAD_L + c + 0.5, y);
          pen = true;
        } else pen = false;
      }
      ctx.stroke();
      // the peak
      if (d.peak >= 0) {
        const x = PAD_L + this.xOfEvent(d.peak);
        if (x >= PAD_L && x <= PAD_L + W) {
          const y = this.y(d.peakBytes);
          ctx.fillStyle = '#c81e1e';
          ctx.beginPath(); ctx.moveTo(x, y - 2); ctx.lineTo(x - 5, y - 9); ctx.lineTo(x + 5, y - 9);
          ctx.fill();
          ctx.font = '11px system-ui, sans-serif';
          ctx.textBaseline = 'bottom';
          const text = 'peak ' + fmtBytes(d.peakBytes);
          const tw = ctx.measureText(text).width;
          const align = x + tw / 2 > PAD_L + W ? 'right' : x - tw / 2 < PAD_L ? 'left' : 'center';
          const left = align === 'right' ? x - tw : align === 'left' ? x : x - tw / 2;
          const ty = Math.max(PAD_T + 12, y - 10);
          ctx.fillStyle = 'rgba(255,255,255,0.85)';
          ctx.fillRect(left - 3, ty - 12, tw + 6, 13);
          ctx.fillStyle = '#c81e1e';
          ctx.textAlign = align;
          ctx.fillText(text, x, ty);
        }
      }
    }

    markers() {   // [{x, kind, i}] of the pool events and moves in view
      const d = this.d, out = [];
      if (!d.pe) return out;
      for (let i = 0; i < d.pe.at.length; i++) {
        const kind = d.pe.kinds[d.pe.kind[i]];
        const x = this.mode === 'time' ? ((d.pe.t[i] - this.view.a) / (this.view.b - this.view.a)) * this.W
          : this.xOfEvent(d.pe.at[i] - 0.5);
        if (x >= -1 && x <= this.W + 1) out.push({ x, kind, i });
      }
      for (let j = 0; j < d.moves.length; j++) {
        const x = this.xOfEvent(d.moves[j]);
        if (x >= -1 && x <= this.W + 1) out.push({ x, kind: 'move', e: d.moves[j] });
      }
      return out;
    }

    drawMarkers(ctx, W, H) {
      const ms = this.markersInView = this.markers();
      const byPx = new Map();
      for (const mk of ms) {
        const px = Math.min(W - 1, Math.max(0, Math.floor(mk.x)));
        const prev = byPx.get(px);
        if (!prev || KIND_ORDER.indexOf(mk.kind) < KIND_ORDER.indexOf(prev)) byPx.set(px, mk.kind);
      }
      ctx.fillStyle = '#f0f2f4';
      ctx.fillRect(PAD_L, 1, W, LANE);
      for (const [px, kind] of byPx) {
        const [colour, , line] = EVENT_KINDS[kind];
        ctx.fillStyle = colour;
        ctx.fillRect(PAD_L + px - 1, 3, 3, LANE - 4);
        if (line) {
          ctx.strokeStyle = colour;
          ctx.setLineDash([3, 3]);
          ctx.beginPath(); ctx.moveTo(PAD_L + px + 0.5, PAD_T); ctx.lineTo(PAD_L + px + 0.5, PAD_T + H);
          ctx.stroke();
          ctx.setLineDash([]);
        }
      }
    }

    drawOverlay(hoverX, drag) {
      const ctx = this.over.getContext('2d');
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, this.over.width, this.over.height);
      const sel = this.p.moment;
      if (sel !== null) {
        const x = Math.round(PAD_L + this.xOfEvent(sel)) + 0.5;
        if (x >= PAD_L && x <= PAD_L + this.W) {
          ctx.strokeStyle = '#111';
          ctx.lineWidth = 1.5;
          ctx.beginPath(); ctx.moveTo(x, PAD_T - 2); ctx.lineTo(x, PAD_T + PLOT_H); ctx.stroke();
        }
      }
      if (hoverX !== undefined && hoverX !== null) {
        ctx.strokeStyle = 'rgba(0,0,0,0.35)';
        ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(hoverX + 0.5, PAD_T); ctx.lineTo(hoverX + 0.5, PAD_T + PLOT_H);
        ctx.stroke();
      }
      if (drag) {
        ctx.fillStyle = 'rgba(47,109,181,0.18)';
        ctx.fillRect(Math.min(drag[0], drag[1]), PAD_T, Math.abs(drag[1] - drag[0]), PLOT_H);
      }
    }

    columnAt(clientX) {
      const r = this.over.getBoundingClientRect();
      const c = Math.floor(clientX - r.left - PAD_L);
      return c >= 0 && c < this.W ? c : null;
    }

    hover(ev) {
      const d = this.d, r = this.over.getBoundingClientRect();
      const x = ev.clientX - r.left, y = ev.clientY - r.top;
      if (y < PAD_T - 2) return this.hoverMarkers(ev, x - PAD_L);
      const c = this.columnAt(ev.clientX);
      if (c === null || y > PAD_T + PLOT_H) { hideTip(); this.drawOverlay(); return; }
      this.drawOverlay(PAD_L + c);
      const m = this.mom[c], v = (PAD_T + PLOT_H - y) / PLOT_H * this.ymax;
      const total = d.liveAt(m);
      let head = '<div class="dim">' + (m < 0 ? 'before the first event' : 'after event ' +
        fmtInt(m) + ' · ' + fmtTime(d.timeOf(m) - d.t[0])) + ' · live ' + fmtBytes(total) +
        (this.colEvents[c] > 1 ? ' · ' + fmtInt(this.colEvents[c]) + ' events in this pixel (their highest shown)' : '') +
        '</div>';
      if (v > total || v < 0) { showTip(head, ev); return; }
      if (this.perBlock) {
        let acc = 0;
        for (const k of this.cand) {
          if (!d.isLive(k, m)) continue;
          if (v < acc + d.al.size[k]) {
            const al = d.al;
            showTip('<b>' + esc(d.siteLabel(al.stack[k])) + '</b><br>' + fmtBytes(al.size[k]) +
              ' (' + fmtInt(al.size[k]) + ' bytes) at ' + hex(al.address[k]) + '<br>' +
              '<span class="dim">' + (al.start[k] < 0 ? 'live before the first event' : 'made at event ' +
              fmtInt(al.start[k])) + (al.end[k] < d.n ? ', freed at event ' + fmtInt(al.end[k]) :
              ', still live at the end') + '</span>' + stackHtml(d, al.stack[k]) + head, ev);
            return;
          }
          acc += d.al.size[k];
        }
      } else {
        const nb = d.bands.length;
        let acc = 0;
        for (let b = 0; b < nb; b++) {
          const val = this.sums[c * nb + b];
          if (val <= 0) continue;
          if (v < acc + val) {
            const band = d.bands[b];
            showTip('<b>' + esc(d.bandLabel[b]) + '</b><br>' + fmtBytes(val) + ' live (' +
              fmtPct(val / total) + ')' + (band.site !== null ? siteStackHtml(d, band.site) :
              '<div class="dim">' + band.sites + ' call sites outside the top bands</div>') +
              head, ev);
            return;
          }
          acc += val;
        }
      }
      showTip(head, ev);
    }

    hoverMarkers(ev, x) {
      const d = this.d;
      const near = (this.markersInView || []).filter((mk) => Math.abs(mk.x - x) <= 3);
      if (!near.length) { hideTip(); return; }
      const counts = {};
      for (const mk of near) counts[mk.kind] = (counts[mk.kind] || 0) + 1;
      const lines = KIND_ORDER.filter((k) => counts[k]).map((k) =>
        '<span style="color:' + EVENT_KINDS[k][0] + '">■</span> ' + esc(EVENT_KINDS[k][1]) + ' ×' + counts[k]);
      const details = near.slice(0, 6).map((mk) => {
        if (mk.kind === 'move') {
          const k = d.startOwner[mk.e];
          return 'move: ' + fmtBytes(d.al.size[k]) + ' to ' + hex(d.al.address[k]);
        }
        const i = mk.i, pe = d.pe;
        const t = fmtTime(pe.t[i] - d.t[0]);
        if (mk.kind === 'exhausted') return t + ' refused ' + fmtBytes(pe.size[i]) + (pe.arg[i] ?
          ' (limit ' + fmtBytes(pe.arg[i]) + ')' : ' (the OS refused)');
        if (mk.kind === 'limit') return t + ' needed ' + fmtBytes(pe.size[i]) + ', limit ' + fmtBytes(pe.arg[i]);
        if (mk.kind === 'error') return t + ' error ' + pe.arg[i] + ' at ' + hex(pe.address[i]);
        if (mk.kind === 'mesh') return t + ' slab ' + hex(pe.address[i]) + ' onto ' + hex(pe.arg[i]) + ', ' + fmtBytes(pe.size[i]) + ' freed';
        return t + ' ' + mk.kind + ' ' + fmtBytes(pe.size[i]) + ' at ' + hex(pe.address[i]);
      });
      showTip(lines.join('<br>') + '<div class="dim">' + details.map(esc).join('<br>') +
              (near.length > 6 ? '<br>…' : '') + '</div>', ev);
    }

    bindMouse() {
      let down = null;
      this.over.addEventListener('mousedown', (ev) => {
        const r = this.over.getBoundingClientRect();
        down = ev.clientX - r.left;
        ev.preventDefault();
      });
      window.addEventListener('mouseup', (ev) => {
        if (down === null) return;
        const r = this.over.getBoundingClientRect();
        const up = ev.clientX - r.left;
        const from = down;
        down = null;
        if (Math.abs(up - from) >= 5) {
          const c0 = Math.max(0, Math.min(from, up) - PAD_L), c1 = Math.min(this.W, Math.max(from, up) - PAD_L);
          if (c1 - c0 >= 2) {
            const v = this.view, span = v.b - v.a;
            let a = v.a + (c0 / this.W) * span, b = v.a + (c1 / this.W) * span;
            if (this.mode === 'events') {
              a = Math.floor(a); b = Math.max(a + 2, Math.ceil(b));
            }
            this.view = { a, b };
            this.render();
          }
          return;
        }
        const c = this.columnAt(ev.clientX);
        if (c !== null && ev.target === this.over) this.p.select(this.mom[c]);
      });
      this.over.addEventListener('mousemove', (ev) => {
        if (down !== null) {
          const r = this.over.getBoundingClientRect();
          this.drawOverlay(null, [down, ev.clientX - r.left]);
          return;
        }
        this.hover(ev);
      });
      this.over.addEventListener('mouseleave', () => { hideTip(); this.drawOverlay(); });
      this.over.addEventListener('dblclick', () => this.reset());
    }
  }

  // ---------------------------------------------------- allocator state --
  const LABEL_W = 178, ROW_H = 22, ROW_GAP = 10, GAP_W = 34, MAX_ROWS = 120;

  // Lays a row out: long runs of an elidable class (address space that
  // costs nothing) shrink to a fixed-width gap, the rest is drawn to scale.
  function layoutRow(runs, W) {
    const el_ = [];
    let keep = 0;
    for (let i = 0; i < runs.len.length; i++) {
      if (runs.elide[i]) el_.push(i); else keep += runs.len[i];
    }
    let elided = new Set(el_);
    const maxGaps = Math.max(1, Math.floor(W / (3 * GAP_W)));
    if (elided.size > maxGaps) {
      elided = new Set(el_.sort((x, y) => runs.len[y] - runs.len[x]).slice(0, maxGaps));
    }
    for (let it = 0; it < 20; it++) {
      let shown = keep;
      for (const i of el_) if (!elided.has(i)) shown += runs.len[i];
      const s = shown > 0 ? (W - GAP_W * elided.size) / shown : 0;
      let changed = false;
      for (const i of [...elided]) {
        if (shown > 0 && runs.len[i] * s < GAP_W) { elided.delete(i); changed = true; }
      }
      if (!changed) break;
    }
    let shown = keep;
    for (const i of el_) if (!elided.has(i)) shown += runs.len[i];
    const gapW = shown > 0 ? GAP_W : W / Math.max(1, elided.size);
    const s = shown > 0 ? (W - gapW * elided.size) / shown : 0;
    const x0 = new Float64Array(runs.len.length + 1);
    for (let i = 0; i < runs.len.length; i++) {
      x0[i + 1] = x0[i] + (elided.has(i) ? gapW : runs.len[i] * s);
    }
    return { x0, elided, scale: s };
  }

  class StateView {
    constructor(panel, host) {
      this.p = panel;
      this.d = panel.d;
      this.bySite = false;
      this.title = el('span', {});
      this.backBtn = el('button', { onclick: () => panel.select(null) }, 'back to the snapshot');
      this.siteBtn = el('button', { onclick: () => { this.bySite = !this.bySite;
        this.siteBtn.className = this.bySite ? 'on' : ''; this.render(); } }, 'live blocks by call site');
      this.counts = el('div', { class: 'meta' });
      host.append(el('h3', {}, this.title, el('span', { class: 'tools' }, this.backBtn, this.siteBtn)));
      host.append(this.counts);
      this.wrap = el('div', { class: 'canvas-wrap' });
      this.canvas = el('canvas', { 'data-role': 'state' });
      this.wrap.append(this.canvas);
      host.append(this.wrap);
      this.legend = el('div', { class: 'legend' });
      this.note = el('div', { class: 'hint' });
      host.append(this.legend, this.note);
      this.canvas.addEventListener('mousemove', (ev) => this.hover(ev));
      this.canvas.addEventListener('mouseleave', hideTip);
    }

    // classes: 0..S-1 the block states, S the "not live" fill, S+1+b site band b
    colourOf(cls) {
      const S = this.d.states.length;
      if (cls < S) return STATE_COLOURS[this.d.states[cls]] || '#999';
      if (cls === S) return NOTLIVE_COLOUR;
      return this.d.bandColour[cls - S - 1];
    }

    rowsAtSnapshot() {
      const d = this.d, b = d.blocks, s = d.segs, S = d.states.length;
      const released = d.states.indexOf('released'), live = d.states.indexOf('live');
      const rows = [];
      for (let r = 0; r < d.rows.segment.length; r++) {
        const seg = d.rows.segment[r], first = d.rows.first[r], count = d.rows.count[r];
        const runs = { addr: [], len: [], cls: [], elide: [], ref: [] };
        let at = s.address[seg];
        const end = s.address[seg] + s.size[seg];
        for (let i = first; i < first + count; i++) {
          if (b.address[i] > at) this.push(runs, at, b.address[i] - at, released, true, -1);
          let cls = b.state[i];
          if (this.bySite && cls === live) cls = S + 1 + d.bandOf(b.site[i]);
          this.push(runs, b.address[i], b.size[i], cls, b.state[i] === released, i);
          at = Math.max(at, b.address[i] + b.size[i]);
        }
        if (end > at) this.push(runs, at, end - at, released, true, -1);
        rows.push({ seg, address: s.address[seg], size: s.size[seg], runs,
                    label: [d.m.segment_kinds[s.kind[seg]] + ' · ' + d.m.heaps[s.heap[seg]] + ' heap',
                            fmtBytes(s.size[seg]) + ', ' + fmtBytes(s.resident[seg]) + ' resident'] });
      }
      return rows;
    }

    rowsAtMoment(m) {
      const d = this.d, S = d.states.length, live = d.states.indexOf('live'), al = d.al;
      const R = d.regions;
      const rows = [];
      for (let r = 0; r < R.address.length; r++) {
        if (R.start[r] <= m && R.end[r] > m) rows.push({ region: r, address: R.address[r], size: R.size[r], items: [] });
      }
      rows.sort((x, y) => x.address - y.address);
      const starts = rows.map((x) => x.address);
      let unplaced = 0, unplacedBytes = 0;
      this.momentBlocks = 0;
      for (let k = 0; k < al.start.length && al.start[k] <= m; k++) {
        if (al.end[k] <= m) continue;
        this.momentBlocks++;
        const j = upperBound(starts, al.address[k], 0, starts.length) - 1;
        if (j < 0 || al.address[k] >= rows[j].address + rows[j].size) { unplaced++; unplacedBytes += al.size[k]; continue; }
        rows[j].items.push(k);
      }
      for (const row of rows) {
        row.items.sort((x, y) => al.address[x] - al.address[y]);
        const runs = { addr: [], len: [], cls: [], elide: [], ref: [] };
        let at = row.address;
        const end = row.address + row.size;
        for (const k of row.items) {
          if (al.address[k] > at) this.push(runs, at, al.address[k] - at, S, true, -1);
          const cls = this.bySite ? S + 1 + d.allocBand[k] : live;
          this.push(runs, al.address[k], al.size[k], cls, false, k);
          at = Math.max(at, al.address[k] + al.size[k]);
        }
        if (end > at) this.push(runs, at, end - at, S, true, -1);
        row.runs = runs;
        row.label = [d.m.heaps[R.heap[row.region]] === 'direct' ? 'direct mapping' :
                     'arena · ' + d.m.heaps[R.heap[row.region]] + ' heap',
                     fmtBytes(row.size) + ', ' + fmtBytes(row.items.reduce((a, k) => a + al.size[k], 0)) + ' live'];
      }
      this.unplaced = [unplaced, unplacedBytes];
      return rows;
    }

    push(runs, addr, len, cls, elide, ref) {
      const n = runs.len.length;
      if (n && ref < 0 && runs.ref[n - 1] < 0 && runs.cls[n - 1] === cls) { runs.len[n - 1] += len; return; }
      runs.addr.push(addr); runs.len.push(len); runs.cls.push(cls); runs.elide.push(elide); runs.ref.push(ref);
    }

    render() {
      const d = this.d, m = this.p.moment;
      const atSnapshot = m === null;
      this.backBtn.style.display = atSnapshot ? 'none' : '';
      this.rowsData = atSnapshot ? this.rowsAtSnapshot() : this.rowsAtMoment(m);
      const rows = this.rowsData.slice(0, MAX_ROWS);
      if (atSnapshot) {
        this.title.replaceChildren('Allocator state at the snapshot');
        const s = d.segs, kinds = d.m.segment_kinds, nk = {};
        for (let i = 0; i < s.kind.length; i++) nk[kinds[s.kind[i]]] = (nk[kinds[s.kind[i]]] || 0) + 1;
        const kindText = Object.entries(nk).map(([k, v]) => v + ' ' + k + (v > 1 ? 's' : '')).join(', ');
        this.counts.replaceChildren(fig('segments', s.kind.length, fmtInt(s.kind.length)), ' segments' +
          (kindText ? ' (' + kindText + ')' : '') + ', ',
          fig('blocks', d.blocks.state.length, fmtInt(d.blocks.state.length)), ' block entries; ',
          this.rowsData.length + ' rows (arenas and direct mappings, each with its slabs)');
        this.note.textContent = 'Each row is one arena or direct mapping, drawn to its own scale; ' +
          'long runs given back to the OS shrink to a hatched gap. A pixel holding several states ' +
          'is split between them by bytes, so holes and meshed pages show even when small.';
      } else {
        this.title.replaceChildren('Live blocks after event ' + fmtInt(m) + ' (' +
                                   fmtTime(d.timeOf(m) - d.t[0]) + ')');
        this.counts.replaceChildren(fig('moment-blocks', this.momentBlocks, fmtInt(this.momentBlocks)),
          ' live blocks, ', fig('moment-live-bytes', d.liveAt(m)), ' in ' + this.rowsData.length +
          ' mapped segments' + (this.unplaced[0] ? '; ' + this.unplaced[0] + ' blocks (' +
          fmtBytes(this.unplaced[1]) + ') outside the segments the history knows' : ''));
        this.note.textContent = 'Before the snapshot the history knows which blocks were live and ' +
          'which arenas were mapped, not which free bytes were cached, holes or given back: those ' +
          'are drawn as "not live", and long runs of them shrink to a hatched gap.';
      }
      const width = Math.max(360, this.wrap.clientWidth || 600);
      const W = this.W = width - LABEL_W;
      const extra = this.rowsData.length > MAX_ROWS ? 18 : 0;
      const height = rows.length * (ROW_H + ROW_GAP) + 4 + extra;
      const ctx = setupCanvas(this.canvas, width, height);
      ctx.clearRect(0, 0, width, height);
      const present = new Map();
      rows.forEach((row, r) => {
        const y = 2 + r * (ROW_H + ROW_GAP);
        row.y = y;
        row.lay = layoutRow(row.runs, W);
        this.drawRow(ctx, row, y, W, present);
        ctx.fillStyle = '#1d2733';
        ctx.font = '11px system-ui, sans-serif';
        ctx.textAlign = 'left';
        ctx.textBaseline = 'top';
        ctx.fillText(row.label[0], 0, y - 1, LABEL_W - 8);
        ctx.fillStyle = '#5b6673';
        ctx.fillText(row.label[1], 0, y + 11, LABEL_W - 8);
      });
      if (extra) {
        ctx.fillStyle = '#5b6673';
        ctx.fillText('… ' + (this.rowsData.length - MAX_ROWS) + ' more rows not drawn', 0, height - 14);
      }
      this.rows = rows;
      const S = d.states.length;
      const items = [...present.keys()].sort((a, b) => a - b).map((cls) => {
        const name = cls < S ? STATE_TEXT[d.states[cls]] || d.states[cls] : cls === S ? 'not live' : d.bandLabel[cls - S - 1];
        const total = atSnapshot && cls < S ? ' ' + fmtBytes(d.m.totals.bytes[d.states[cls]]) : '';
        return el('span', { class: 'item' }, el('span', { class: 'sw', style: 'background:' + this.colourOf(cls) }),
                  el('span', { class: 't' }, name + total));
      });
      if (rows.some((row) => row.lay.elided.size)) {
        items.push(el('span', { class: 'item' }, el('span', { class: 'sw', style: 'background:repeating-linear-gradient(135deg,#d0d4d9 0 2px,#f4f5f7 2px 5px)' }),
                      el('span', { class: 't' }, atSnapshot ? 'long run given back (not to scale)' : 'long run not live (not to scale)')));
      }
      this.legend.replaceChildren(...items);
    }

    drawRow(ctx, row, y, W, present) {
      const runs = row.runs, lay = row.lay, x0 = LABEL_W;
      const C = this.d.states.length + 1 + this.d.bands.length;
      const acc = new Float32Array(W * C);
      for (let i = 0; i < runs.len.length; i++) {
        if (lay.elided.has(i)) {
          const gx = x0 + lay.x0[i], gw = lay.x0[i + 1] - lay.x0[i];
          ctx.fillStyle = '#f4f5f7';
          ctx.fillRect(gx, y, gw, ROW_H);
          ctx.save();
          ctx.beginPath(); ctx.rect(gx, y, gw, ROW_H); ctx.clip();
          ctx.strokeStyle = '#d0d4d9';
          ctx.beginPath();
          for (let k = -ROW_H; k < gw; k += 5) { ctx.moveTo(gx + k, y + ROW_H); ctx.lineTo(gx + k + ROW_H, y); }
          ctx.stroke();
          ctx.restore();
          const text = fmtBytes(runs.len[i]);
          ctx.font = '10px system-ui, sans-serif';
          if (ctx.measureText(text).width < gw - 4) {
            ctx.fillStyle = '#5b6673'; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
            ctx.fillText(text, gx + gw / 2, y + ROW_H / 2);
          }
          continue;
        }
        present.set(runs.cls[i], true);
        const a = lay.x0[i], b = lay.x0[i + 1];
        const cls = runs.cls[i];
        for (let px = Math.floor(a); px < Math.ceil(b) && px < W; px++) {
          const cov = Math.min(b, px + 1) - Math.max(a, px);
          if (cov > 0) acc[px * C + cls] += cov;
        }
      }
      // draw: each pixel split vertically between its classes, by bytes
      let runStart = -1, runCls = -1;
      const flush = (end) => {
        if (runStart >= 0) { ctx.fillStyle = this.colourOf(runCls); ctx.fillRect(x0 + runStart, y, end - runStart, ROW_H); }
        runStart = -1;
      };
      for (let px = 0; px < W; px++) {
        let tot = 0, n = 0, only = -1;
        for (let c = 0; c < C; c++) { const v = acc[px * C + c]; if (v > 0) { tot += v; n++; only = c; } }
        if (n === 1) {
          if (runStart >= 0 && runCls === only) continue;
          flush(px); runStart = px; runCls = only; continue;
        }
        flush(px);
        if (n === 0) continue;
        let yy = y + ROW_H;
        for (let c = 0; c < C; c++) {
          const v = acc[px * C + c];
          if (v <= 0) continue;
          const h = (v / tot) * ROW_H;
          ctx.fillStyle = this.colourOf(c);
          ctx.fillRect(x0 + px, yy - h, 1, h);
          yy -= h;
        }
      }
      flush(W);
      ctx.strokeStyle = '#aab3bd';
      ctx.strokeRect(x0 + 0.5, y + 0.5, W - 1, ROW_H - 1);
    }

    hover(ev) {
      const d = this.d, r = this.canvas.getBoundingClientRect();
      const x = ev.clientX - r.left - LABEL_W, y = ev.clientY - r.top;
      const row = (this.rows || []).find((rw) => y >= rw.y && y < rw.y + ROW_H);
      if (!row || x < 0 || x >= this.W) { hideTip(); return; }
      const lay = row.lay, runs = row.runs;
      const i = Math.max(0, upperBound(lay.x0, x, 0, lay.x0.length) - 1);
      if (i >= runs.len.length) { hideTip(); return; }
      // the run under the cursor: for a wide run, its exact bytes; for a
      // pixel holding many runs, the nearest
      const w = lay.x0[i + 1] - lay.x0[i];
      const addr = lay.elided.has(i) || w <= 0 ? runs.addr[i] : runs.addr[i] + ((x - lay.x0[i]) / w) * runs.len[i];
      const head = '<div class="dim">' + esc(row.label.join(' · ')) + ' at ' + hex(row.address) + '</div>';
      const ref = runs.ref[i];
      if (this.p.moment === null && ref >= 0) {
        const b = d.blocks, st = d.states[b.state[ref]], seg = b.segment[ref];
        const inSlab = d.segs.parent[seg] >= 0 ? 'in a slab of ' + fmtBytes(d.segs.block_size[seg]) +
          ' blocks (class ' + d.segs.size_class[seg] + ')' : '';
        const site = b.site[ref];
        showTip('<b>' + esc(STATE_TEXT[st] || st) + '</b><br>' + fmtBytes(b.size[ref]) + ' at ' + hex(b.address[ref]) +
          (b.requested[ref] ? ', ' + fmtInt(b.requested[ref]) + ' bytes requested' : '') +
          (inSlab ? '<br><span class="dim">' + inSlab + '</span>' : '') +
          (st === 'live' || st === 'buffer' || st === 'pinned' ? '<br><b>' + esc(d.siteLabel(site)) + '</b>' +
           stackHtml(d, site) : '') + head, ev);
        return;
      }
      if (ref >= 0) {
        const al = d.al;
        showTip('<b>live</b><br>' + fmtBytes(al.size[ref]) + ' (' + fmtInt(al.size[ref]) + ' bytes) at ' +
          hex(al.address[ref]) + '<br><b>' + esc(d.siteLabel(al.stack[ref])) + '</b>' +
          stackHtml(d, al.stack[ref]) + head, ev);
        return;
      }
      const what = this.p.moment === null ? 'given back to the OS (address space only)' : 'not live (free, cached or given back)';
      showTip('<b>' + fmtBytes(runs.len[i]) + ' ' + what + '</b><br>' + hex(runs.addr[i]) + ' – ' +
        hex(runs.addr[i] + runs.len[i]) + (lay.elided.has(i) ? ' <span class="dim">(shrunk: not to scale)</span>' : '') +
        '<br><span class="dim">near ' + hex(Math.floor(addr)) + '</span>' + head, ev);
    }
  }

  // --------------------------------------------------------------- panel --
  class Panel {
    constructor(model, index, host) {
      const d = this.d = new Data(model);
      this.moment = null;
      const p = model.process, st = model.stats, h = model.history;
      const root = this.root = el('section', { class: 'panel', 'data-snapshot': String(index),
                                               'data-label': p.label });
      host.append(root);
      const taken = new Date(model.taken_unix_ns / 1e6);
      root.append(el('h2', {}, p.label));
      root.append(el('div', { class: 'meta' }, (p.argv || []).join(' ') + ' · pid ' + p.pid + ' on ' + p.host +
        ' · taken ' + taken.toISOString().replace('T', ' ').slice(0, 19) + ' UTC · Python ' + p.python +
        ', numpy ' + p.numpy + ', mempool ' + p.mempool));
      const figs = el('div', { class: 'figs' });
      const box = (k, v) => el('div', { class: 'fig-box' }, el('div', { class: 'k' }, k), el('div', { class: 'v' }, v));
      figs.append(box('live', fig('live-bytes', st.live_bytes)),
                  box('peak (pool)', fig('pool-peak-bytes', st.peak_live_bytes)),
                  box('resident', fig('resident-bytes', st.resident_bytes)),
                  box('process RSS', fig('rss-bytes', st.process_rss_bytes)),
                  box('fragmentation', fig('fragmentation', st.fragmentation,
                                           st.fragmentation === null || st.fragmentation === undefined ? '–' : fmtPct(st.fragmentation))));
      if (h) {
        figs.append(box('events', fig('events', h.events, fmtInt(h.events))),
                    box('peak (history)', fig('history-peak-bytes', d.peakBytes)),
                    box('live at last event', fig('history-live-bytes', d.n ? d.liveAt(d.n - 1) : d.base)));
      }
      root.append(figs);
      if (h) {
        const warn = [];
        if (h.dropped) warn.push('The ring dropped the oldest ' + fmtInt(h.dropped) + ' of ' + fmtInt(h.recorded) +
          ' events (max_entries=' + fmtInt(h.max_entries) + '): blocks made before the first event kept are drawn as live from the start.');
        if (h.no_gil) warn.push(fmtInt(h.no_gil) + ' events came from threads without the GIL: no stack ("no GIL" band).');
        if (!h.recording) warn.push('The recording had stopped before the snapshot: the timeline ends at its last event, the allocator state is the snapshot\'s.');
        if (h.from_snapshot) warn.push(fmtInt(h.from_snapshot) + ' blocks live at the snapshot were made before the first event: drawn as live from the start.');
        if (h.pool_events_dropped) warn.push(fmtInt(h.pool_events_dropped) + ' pool events were dropped by their ring.');
        for (const w of warn) root.append(el('div', { class: 'warn' }, w));
      }
      this.breakdown(root);
      if (h && d.n > 0) {
        this.timeline = new Timeline(this, root);
      } else {
        root.append(el('h3', {}, 'Active memory timeline'),
                    el('div', { class: 'warn' }, h ? 'The history holds no events.' :
                       'No history in this snapshot: record one with mempool.history.record(pool) around ' +
                       'the code, or python -m mempool run --history FILE script.py, to see the timeline, ' +
                       'the call sites and any earlier moment.'));
      }
      this.state = new StateView(this, root);
      this.sitesHost = el('div', {});
      root.append(this.sitesHost);
    }

    breakdown(root) {
      const d = this.d, bd = this.d.m.breakdown;
      const colours = { live: '#4e79a7', rounding: '#a0cbe8', cached: '#f28e2b', free: '#e15759',
                        buffer: '#59a14f', pinned: '#1e5c2c', unused: '#c4c4c4', other: '#bab0ac', outside: '#8d99a6' };
      const parts = bd.parts.filter((x) => x.bytes !== null && x.bytes > 0);
      const total = bd.rss !== null ? Math.max(bd.rss, bd.resident) : bd.resident;
      root.append(el('h3', {}, 'Why is it held', el('span', { class: 'note' }, 'at the snapshot, as parts of the ' +
        (bd.rss !== null ? 'process RSS (' + fmtBytes(bd.rss) + ')' : 'pool\'s resident bytes (process RSS unknown)'))));
      const bar = el('div', { class: 'bar' });
      for (const x of parts) {
        bar.append(el('div', { style: 'flex:' + (x.bytes / total) + ' 0 0;background:' + colours[x.key],
                               title: x.label + ': ' + fmtBytes(x.bytes) }));
      }
      root.append(bar);
      const tbl = el('table', { class: 'tbl' });
      tbl.append(el('tr', {}, el('th', {}, ''), el('th', {}, 'held by'), el('th', { class: 'num' }, 'bytes'),
                    el('th', { class: 'num' }, 'share'), el('th', {}, 'what it is')));
      for (const x of bd.parts) {
        if (x.bytes === 0) continue;
        tbl.append(el('tr', {}, el('td', {}, el('span', { class: 'sw', style: 'background:' + colours[x.key] })),
          el('td', {}, x.label), el('td', { class: 'num' }, fig('held-' + x.key, x.bytes)),
          el('td', { class: 'num' }, x.bytes === null || x.bytes < 0 ? '' : fmtPct(x.bytes / total)),
          el('td', { class: 'hint' }, x.why)));
      }
      root.append(tbl);
      void d;
    }

    select(m) {
      this.moment = m;
      this.state.render();
      if (this.timeline) this.timeline.drawOverlay();
      this.renderSites();
    }

    renderSites() {
      const d = this.d;
      const opts = [];
      if (d.n > 0) opts.push(['peak', 'at the peak of the history (' + (d.peak < 0 ? 'before the first event' :
                                                                    'after event ' + fmtInt(d.peak)) + ')']);
      if (this.moment !== null) opts.push(['moment', 'at the chosen moment (after event ' + fmtInt(this.moment) + ')']);
      opts.push(['snapshot', 'at the snapshot']);
      if (!opts.find((o) => o[0] === this.sitesAt)) this.sitesAt = opts[0][0];
      const sel = el('select', { onchange: (e) => { this.sitesAt = e.target.value; this.renderSites(); } },
        ...opts.map(([k, t]) => { const o = el('option', { value: k }, t); if (k === this.sitesAt) o.selected = true; return o; }));
      let rows, total;
      if (this.sitesAt === 'snapshot') {
        rows = d.topSitesSnapshot();
        total = rows.reduce((a, r) => a + r.bytes, 0);
      } else {
        const m = this.sitesAt === 'peak' ? d.peak : this.moment;
        rows = d.topSitesAt(m);
        total = d.liveAt(m);
      }
      const tbl = el('table', { class: 'tbl', 'data-role': 'top-sites', 'data-at': this.sitesAt });
      tbl.append(el('tr', {}, el('th', {}, ''), el('th', {}, 'call site (the program\'s line; hover for the stack)'),
                    el('th', { class: 'num' }, 'bytes'), el('th', { class: 'num' }, 'blocks'), el('th', { class: 'num' }, 'share')));
      rows.slice(0, 10).forEach((r, i) => {
        const b = d.bandOf(r.stack);
        const site = el('td', { class: 'site' }, d.sites.label[r.site]);
        site.addEventListener('mousemove', (ev) => showTip('<b>' + esc(d.sites.label[r.site]) +
          '</b><div class="dim">the stack of its largest live block:</div>' + stackHtml(d, r.stack) +
          siteCount(d, r.site), ev));
        site.addEventListener('mouseleave', hideTip);
        tbl.append(el('tr', { 'data-site': String(r.site) },
          el('td', {}, el('span', { class: 'sw', style: 'background:' + d.bandColour[b] })), site,
          el('td', { class: 'num' }, i === 0 ? fig('top-site-bytes', r.bytes) : fig('site-bytes', r.bytes)),
          el('td', { class: 'num' }, i === 0 ? fig('top-site-blocks', r.blocks, fmtInt(r.blocks)) : fmtInt(r.blocks)),
          el('td', { class: 'num' }, total > 0 ? fmtPct(r.bytes / total) : '')));
      });
      if (!rows.length) tbl.append(el('tr', {}, el('td', { colspan: '5', class: 'hint' }, 'no live blocks')));
      this.sitesHost.replaceChildren(el('h3', {}, 'Top call sites', sel,
        el('span', { class: 'note' }, fmtInt(rows.length) + ' sites, ' + fmtBytes(total) + ' live')), tbl);
    }

    render() {
      if (this.timeline) this.timeline.render();
      this.state.render();
      this.renderSites();
    }
  }

  function compareTable(models, panels) {
    const tbl = el('table', { class: 'tbl' });
    tbl.append(el('tr', {}, ...['snapshot', 'events', 'live', 'peak (history)', 'resident', 'free holes',
      'cached', 'outside the pool', 'process RSS'].map((t, i) => el('th', { class: i ? 'num' : '' }, t))));
    models.forEach((m, i) => {
      const st = m.stats, d = panels[i].d;
      const outside = m.breakdown.parts.find((p) => p.key === 'outside').bytes;
      tbl.append(el('tr', {}, el('td', {}, el('a', { href: '#snap-' + i }, m.process.label)),
        el('td', { class: 'num' }, m.history ? fmtInt(m.history.events) : '–'),
        el('td', { class: 'num' }, fmtBytes(st.live_bytes)),
        el('td', { class: 'num' }, m.history && d.n ? fmtBytes(d.peakBytes) : '–'),
        el('td', { class: 'num' }, fmtBytes(st.resident_bytes)),
        el('td', { class: 'num' }, fmtBytes(m.totals.bytes.free)),
        el('td', { class: 'num' }, fmtBytes(m.totals.bytes.cached)),
        el('td', { class: 'num' }, fmtBytes(outside)),
        el('td', { class: 'num' }, fmtBytes(st.process_rss_bytes))));
    });
    return el('div', {}, el('h3', {}, models.length + ' snapshots side by side'), tbl);
  }

  // ---------------------------------------------------------------- main --
  function main() {
    const raw = document.getElementById('mempool-data').textContent;
    const tParse = performance.now();
    const page = JSON.parse(raw);
    const models = page.snapshots;
    document.getElementById('subtitle').textContent = models.length + ' snapshot' +
      (models.length > 1 ? 's' : '') + ' · written by ' + page.generator;
    const host = document.getElementById('panels');
    const panels = models.map((m, i) => new Panel(m, i, host));
    panels.forEach((p, i) => { p.root.id = 'snap-' + i; });
    if (models.length > 1) document.getElementById('compare').append(compareTable(models, panels));
    window.mempoolView = { panels, models, fmtBytes };
    const tPrep = performance.now();
    panels.forEach((p) => p.render());
    let width = window.innerWidth;
    window.addEventListener('resize', () => {
      if (window.innerWidth === width) return;
      width = window.innerWidth;
      clearTimeout(main.t);
      main.t = setTimeout(() => panels.forEach((p) => p.render()), 150);
    });
    const end = performance.now();
    const b = document.body.dataset;
    b.parseMs = (tPrep - tParse).toFixed(1);
    b.scriptMs = (end - T0).toFixed(1);
    b.totalMs = end.toFixed(1);
    b.rendered = '1';
    b.errors = String(errors.length);
  }

  try {
    main();
  } catch (e) {
    showError((e && e.stack) || e);
    console.error(e);
  }
})();
