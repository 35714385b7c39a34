// mempool view, 5/5: a snapshot's panel (figures, why it is held, the
// views, top call sites), the comparison table, and main().

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
    const bd = this.d.m.breakdown;
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
