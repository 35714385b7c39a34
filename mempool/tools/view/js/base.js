// mempool view, 1/5: helpers, colours and the tooltip.  The page inlines
// js/*.js in the order of view/__init__.py's JS_FILES inside one function
// scope (see page.html); plain JavaScript and canvas, no library, no network.

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
