// The weft viewer page. Rust (wasm) compiles specs, lays out and draws graphs and charts;
// this file only wires the page: editor, pan/zoom, search, clicks, the live run stream.
import init, { compile_spec, render_plan, loss_chart } from './pkg/weft_web.js';

const $ = (id) => document.getElementById(id);
const graph = $('graph'), editor = $('editor'), gutter = $('gutter');
const state = {
  file: 'spec.yaml', served: '', plan: null, drawn: null, vb: [0, 0, 1, 1],
  open: { train: true, forward: true, backward: true, update: true },
  history: [], problems: [], selected: null, timings: {},
};

function debounce(f, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); }; }
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
const human = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + 'G' : n >= 1e6 ? (n / 1e6).toFixed(2) + 'M' : n >= 1e3 ? (n / 1e3).toFixed(1) + 'K' : String(n);

function setViewBox(vb) {
  state.vb = vb;
  const svg = graph.querySelector('svg');
  if (svg) svg.setAttribute('viewBox', vb.map((v) => v.toFixed(1)).join(' '));
}

function fit() {
  if (!state.drawn) return;
  setViewBox([0, 0, state.drawn.width, state.drawn.height]);
}

function zoomTo(boxes) {
  if (!boxes.length) return;
  const x0 = Math.min(...boxes.map((b) => b[0])) - 40, y0 = Math.min(...boxes.map((b) => b[1])) - 40;
  const x1 = Math.max(...boxes.map((b) => b[0] + b[2])) + 40, y1 = Math.max(...boxes.map((b) => b[1] + b[3])) + 40;
  const r = graph.getBoundingClientRect(), aspect = r.width / Math.max(r.height, 1);
  let w = Math.max(x1 - x0, 300), h = Math.max(y1 - y0, 200);
  if (w / h < aspect) w = h * aspect; else h = w / aspect;
  setViewBox([(x0 + x1) / 2 - w / 2, (y0 + y1) / 2 - h / 2, w, h]);
}

function draw() {
  if (!state.plan) return;
  const t0 = performance.now();
  const r = JSON.parse(render_plan(JSON.stringify(state.plan), JSON.stringify(state.open)));
  const t1 = performance.now();
  if (r.error) { showProblems([{ line: 0, col: 0, text: r.error }]); return; }
  const keep = state.drawn && graph.querySelector('svg') ? state.vb : null;
  graph.innerHTML = r.svg;
  state.drawn = r;
  state.timings = { layout_ms: t1 - t0, insert_ms: performance.now() - t1 };
  if (keep) setViewBox(keep); else fit();
  $('title').textContent = state.plan.name;
  const ops = r.nodes.filter((n) => n.kind === 'op').length;
  $('stats').textContent = `${r.plan_nodes} plan nodes · ${ops} drawn · ${human(r.params)} params · ${human(r.flops)} FLOPs/step`;
  search();
  if (state.selected !== null) select(state.selected, false);
}

function showProblems(problems) {
  state.problems = problems;
  $('problems').innerHTML = problems.map((p, i) =>
    `<li data-i="${i}" data-line="${p.line}">${p.line ? `line ${p.line}: ` : ''}${esc(p.text)}</li>`).join('');
  updateGutter();
}

function updateGutter() {
  const bad = new Set(state.problems.map((p) => p.line));
  const n = editor.value.split('\n').length;
  let s = '';
  for (let i = 1; i <= n; i++) s += bad.has(i) ? `<span class="bad" data-line="${i}">${i}</span>` : `${i}\n`;
  gutter.innerHTML = s;
  editor.style.height = `${n * 16 + 12}px`;
}

function recompile() {
  const r = JSON.parse(compile_spec(state.file, editor.value, state.served));
  if (r.ok) { state.plan = r.plan; showProblems([]); draw(); } else showProblems(r.problems);
}

function search() {
  const q = $('search').value.trim().toLowerCase();
  const nodes = graph.querySelectorAll('.node');
  nodes.forEach((g) => g.classList.remove('hit'));
  graph.classList.toggle('searching', q !== '');
  if (!q || !state.drawn) { $('hits').textContent = ''; return []; }
  const hits = [];
  state.drawn.nodes.forEach((n, i) => {
    if (n.name.toLowerCase().includes(q) || n.op.toLowerCase().includes(q)) hits.push(i);
  });
  hits.forEach((i) => graph.querySelector(`.node[data-node="${i}"]`)?.classList.add('hit'));
  $('hits').textContent = `${hits.length} match${hits.length === 1 ? '' : 'es'}`;
  return hits;
}

function select(i, show = true) {
  state.selected = i;
  graph.querySelectorAll('.node.selected').forEach((g) => g.classList.remove('selected'));
  const n = state.drawn?.nodes[i];
  if (!n) return;
  graph.querySelector(`.node[data-node="${i}"]`)?.classList.add('selected');
  if (!show) return;
  const rows = [['name', n.name], ['op', n.op], ['kind', n.kind]];
  if (n.shape) rows.push(['output shape', n.shape]);
  if (n.group) rows.push(['group', n.group]);
  if (n.params) rows.push(['parameters', n.params.toLocaleString()]);
  if (n.flops) rows.push(['FLOPs / step', human(n.flops)]);
  if (n.fused) rows.push(['fused kernel', 'bias + activation in one kernel']);
  if (n.bucket !== null && n.bucket !== undefined) rows.push(['all-reduce bucket', n.bucket]);
  for (const [k, v] of n.details) rows.push([k, v]);
  $('detail').innerHTML = `<table>${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

function toggle(part) {
  state.open[part] = !state.open[part];
  state.selected = null;
  draw();
}

function wire() {
  editor.addEventListener('input', debounce(recompile, 120));
  editor.addEventListener('input', updateGutter);
  $('search').addEventListener('input', () => { const h = search(); if (h.length) zoomTo(h.map((i) => state.drawn.boxes[i])); });
  $('expand').onclick = () => { state.open = { train: true, forward: true, backward: true, update: true }; draw(); fit(); };
  $('collapse').onclick = () => { state.open = { train: false, forward: false, backward: false, update: false }; draw(); fit(); };
  $('fit').onclick = fit;
  $('export').onclick = () => {
    const blob = new Blob([graph.innerHTML], { type: 'image/svg+xml' });
    const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: `${state.plan?.name || 'plan'}.svg` });
    a.click();
    URL.revokeObjectURL(a.href);
  };
  $('problems').onclick = (e) => {
    const line = Number(e.target.closest('li')?.dataset.line || 0);
    if (!line) return;
    const lines = editor.value.split('\n');
    const start = lines.slice(0, line - 1).reduce((a, l) => a + l.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(start, start + (lines[line - 1] || '').length);
  };
  let drag = null;
  graph.addEventListener('mousedown', (e) => { drag = { x: e.clientX, y: e.clientY, vb: [...state.vb], moved: false }; });
  window.addEventListener('mouseup', () => { setTimeout(() => { drag = null; }, 0); });
  window.addEventListener('mousemove', (e) => {
    if (!drag) return;
    const r = graph.getBoundingClientRect(), k = drag.vb[2] / r.width;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    setViewBox([drag.vb[0] - dx * k, drag.vb[1] - dy * k, drag.vb[2], drag.vb[3]]);
  });
  graph.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = graph.getBoundingClientRect(), f = e.deltaY > 0 ? 1.15 : 1 / 1.15;
    const [x, y, w, h] = state.vb;
    const px = x + (e.clientX - r.left) / r.width * w, py = y + (e.clientY - r.top) / r.height * h;
    setViewBox([px - (px - x) * f, py - (py - y) * f, w * f, h * f]);
  }, { passive: false });
  graph.addEventListener('click', (e) => {
    if (drag?.moved) return;
    const header = e.target.closest('[data-group]');
    const node = e.target.closest('.node');
    if (node?.dataset.kind === 'stage' && node.dataset.op === 'Train') return toggle('train');
    if (header && (!node || node.dataset.kind === 'group')) return toggle(header.dataset.group);
    if (node) select(Number(node.dataset.node));
  });
}

function connectRun() {
  const es = new EventSource('/api/events');
  // A reconnect replays the run from its first epoch.
  es.onopen = () => { state.history = []; };
  es.addEventListener('epoch', (e) => {
    state.history.push(JSON.parse(e.data));
    $('chart').innerHTML = loss_chart(JSON.stringify(state.history), 300, 200);
    const last = state.history[state.history.length - 1];
    $('run-status').textContent = `epoch ${last.epoch}: loss ${last.train_loss.toFixed(4)}, ${Math.round(last.samples_per_sec)} samples/s`;
    // A distributed run: each worker's throughput this epoch.
    const w = last.worker_samples_per_sec || [];
    const top = Math.max(1, ...w.map(([, v]) => v));
    $('workers').innerHTML = w.length ? '<h3>Samples/s per worker</h3>' + w.map(([r, v]) =>
      `<div class="row" data-worker="${r}">worker ${r}: ${Math.round(v)}<div class="bar" style="width:${(100 * v / top).toFixed(1)}%"></div></div>`).join('') : '';
  });
  es.addEventListener('note', (e) => { $('run-status').textContent = JSON.parse(e.data); });
  es.addEventListener('done', (e) => {
    const d = JSON.parse(e.data);
    $('run-status').textContent = d.error ? `failed: ${d.error}` : `done — test accuracy ${d.test_accuracy == null ? '–' : d.test_accuracy.toFixed(4)}`;
    es.close();
  });
  es.addEventListener('idle', () => es.close());
}

async function main() {
  await init();
  const spec = await (await fetch('/api/spec')).json();
  state.file = spec.file;
  editor.value = spec.text;
  const p = await fetch('/api/plan');
  if (p.ok) { state.served = await p.text(); state.plan = JSON.parse(state.served); draw(); showProblems([]); } else recompile();
  updateGutter();
  wire();
  connectRun();
  // For tests and benchmarks.
  window.weft = {
    state,
    stats: () => ({
      drawn: graph.querySelectorAll('.node').length,
      ops: graph.querySelectorAll('.node.op').length,
      groups: graph.querySelectorAll('.node.group').length,
      stages: graph.querySelectorAll('.node.stage').length,
      plan_nodes: state.plan ? state.plan.nodes.length : 0,
      problems: state.problems,
      points: state.history.length,
      workers: document.querySelectorAll('#workers [data-worker]').length,
      timings: state.timings,
    }),
    compile: (text) => { const r = JSON.parse(compile_spec('bench.yaml', text, '')); if (!r.ok) throw new Error(JSON.stringify(r.problems)); return r.plan; },
    renderPlan: (plan) => { state.plan = plan; state.open = { train: true, forward: true, backward: true, update: true }; draw(); return state.timings; },
  };
  document.body.dataset.ready = 'true';
}

main().catch((e) => { document.body.dataset.ready = 'error'; $('detail').textContent = `the viewer failed to start: ${e}`; });
