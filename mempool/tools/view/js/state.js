// mempool view, 4/5: the allocator state, a row per arena or direct
// mapping, at the snapshot or at a chosen moment.

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
