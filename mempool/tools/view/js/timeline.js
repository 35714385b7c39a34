// mempool view, 3/5: the active-memory timeline (bands per call site or per
// block, one pixel column per moment range, pool events as markers).

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
      ' · events ' + fmtInt(lo[0]) + '–' + fmtInt(hi[W - 1]) +
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
