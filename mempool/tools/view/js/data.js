// mempool view, 2/5: one snapshot's data as typed arrays, and the figures
// at any moment (live bytes, per-band sums, top call sites) from the
// allocations model.py paired.

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
