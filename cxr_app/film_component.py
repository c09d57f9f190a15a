"""The Viewer's film: a Streamlit component (Components v2, inline HTML, CSS and JavaScript: no build step, no
network) that draws the radiograph on a canvas, with the Grad-CAM overlay and its legend, and does window/level,
zoom (wheel), pan (drag) and reset (double-click) in the browser. None of these reruns the script: the reader's
zoom survives a window/level step by construction, and a step redraws in a few milliseconds.

For tests the canvas carries its state: data-level, data-width, data-zoom, data-x, data-y, data-transform (the
canvas's drawing transform), data-overlay (the evidence drawn), data-draws (frames drawn) and data-drawn-at
(performance.now() of the last one)."""

from __future__ import annotations

import streamlit as st

HTML = """
<div class="film">
  <div class="stage">
    <canvas class="view" role="img" aria-label="The radiograph"></canvas>
    <div class="legend" hidden>
      <span>Evidence</span><span>strong</span><div class="bar"></div><span>none</span>
    </div>
  </div>
  <div class="controls">
    <label title="The centre of the displayed grey range; display only, the model is unaffected.">
      <span>Level (brightness)</span>
      <input type="range" class="level" min="0" max="1" step="0.01" value="0.5" aria-label="Level (brightness)">
      <output class="level-value">0.50</output>
    </label>
    <label title="The grey range shown from black to white: narrower is more contrast.">
      <span>Window (contrast)</span>
      <input type="range" class="width" min="0.05" max="1" step="0.05" value="1" aria-label="Window (contrast)">
      <output class="width-value">1.00</output>
    </label>
  </div>
</div>
"""

CSS = """
.film { font-family: var(--st-font, sans-serif); color: var(--st-text-color, inherit); font-size: 14px; }
.stage { display: flex; gap: 6px; }
.view { flex: 1; min-width: 0; height: 100%; display: block; background: #000; cursor: grab; touch-action: none; }
.view.dragging { cursor: grabbing; }
.legend { display: flex; flex-direction: column; align-items: center; gap: 2px; font-size: 12px; }
.legend[hidden] { display: none; }
.legend .bar { flex: 1; width: 12px; border: 1px solid rgba(128, 128, 128, 0.6); }
.controls { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-top: 8px; }
.controls label { display: grid; grid-template-columns: 1fr auto; align-items: center; column-gap: 8px; }
.controls label span { grid-column: 1 / 3; }
.controls input { width: 100%; accent-color: var(--st-primary-color, #ff4b4b); }
.controls output { font-variant-numeric: tabular-nums; min-width: 3em; text-align: right; }
"""

JS = """
const GREY_LEVELS = 65535;

// The window/level rule of cxr_app/radiograph.py's window(): `level` the centre, `width` the range mapped
// to black..white.
function windowed(v, level, width) {
  const low = level - width / 2;
  return Math.min(1, Math.max(0, (v - low) / width));
}

async function inflate(base64) {
  const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint16Array(await new Response(stream).arrayBuffer());
}

function setUp(root) {
  const canvas = root.querySelector('canvas.view');
  const stage = root.querySelector('.stage');
  const ctx = canvas.getContext('2d');
  const buffer = document.createElement('canvas');
  const level = root.querySelector('input.level'), width = root.querySelector('input.width');
  const s = {grey: null, values: null, image: null, overlay: null, w: 0, h: 0, zoom: 1, x: 0, y: 0,
             dirty: false, frame: 0, draws: 0, loads: 0, lut: new Uint8ClampedArray(GREY_LEVELS + 1)};
  canvas.__windowed = windowed;  // for the browser tests: the rule applied

  function rewindow() {
    const L = Number(level.value), W = Number(width.value);
    for (let i = 0; i <= GREY_LEVELS; i++) s.lut[i] = Math.round(windowed(i / GREY_LEVELS, L, W) * 255);
    const px = s.image.data, lut = s.lut, v = s.values;
    for (let i = 0, j = 0; i < v.length; i++, j += 4) { const g = lut[v[i]]; px[j] = g; px[j + 1] = g; px[j + 2] = g; }
    buffer.getContext('2d').putImageData(s.image, 0, 0);
    s.dirty = false;
  }

  function draw() {
    s.frame = 0;
    const dpr = window.devicePixelRatio || 1;
    const cw = canvas.clientWidth, ch = canvas.clientHeight;
    if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
      canvas.width = Math.round(cw * dpr);
      canvas.height = Math.round(ch * dpr);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!s.values || !cw || !ch) return;
    if (s.dirty) rewindow();
    // the film fits the stage at zoom 1; the reader's zoom and pan act on top: css = zoom * (fit) + (x, y)
    const fit = Math.min(cw / s.w, ch / s.h), ox = (cw - s.w * fit) / 2, oy = (ch - s.h * fit) / 2;
    const k = s.zoom * fit;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * (s.zoom * ox + s.x), dpr * (s.zoom * oy + s.y));
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(buffer, 0, 0);
    if (s.overlay) ctx.drawImage(s.overlay, 0, 0, s.w, s.h);
    const t = ctx.getTransform();
    s.draws += 1;
    Object.assign(canvas.dataset, {
      level: level.value, width: width.value, zoom: String(s.zoom), x: String(s.x), y: String(s.y),
      transform: [t.a, t.b, t.c, t.d, t.e, t.f].map(n => n.toFixed(3)).join(','), overlay: String(!!s.overlay),
      draws: String(s.draws), drawnAt: String(performance.now()),
    });
  }

  function request() { if (!s.frame) s.frame = requestAnimationFrame(draw); }

  for (const input of [level, width]) {
    input.addEventListener('input', () => {
      root.querySelector(`output.${input.className}-value`).textContent = Number(input.value).toFixed(2);
      s.dirty = true;
      request();
    });
  }
  canvas.addEventListener('wheel', e => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect(), cx = e.clientX - r.left, cy = e.clientY - r.top;
    const delta = e.deltaY * (e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1);
    const zoom = Math.min(40, Math.max(1, s.zoom * Math.exp(-delta * 0.002)));
    const k = zoom / s.zoom;
    s.x = cx - k * (cx - s.x);
    s.y = cy - k * (cy - s.y);
    s.zoom = zoom;
    request();
  }, {passive: false});
  let drag = null;
  canvas.addEventListener('pointerdown', e => {
    drag = {x: e.clientX, y: e.clientY};
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.add('dragging');
  });
  canvas.addEventListener('pointermove', e => {
    if (!drag) return;
    s.x += e.clientX - drag.x;
    s.y += e.clientY - drag.y;
    drag = {x: e.clientX, y: e.clientY};
    request();
  });
  const stop = () => { drag = null; canvas.classList.remove('dragging'); };
  canvas.addEventListener('pointerup', stop);
  canvas.addEventListener('pointercancel', stop);
  canvas.addEventListener('dblclick', () => { s.zoom = 1; s.x = 0; s.y = 0; request(); });
  s.canvas = canvas;
  s.observer = new ResizeObserver(request);

  // A new film (its grey values) is decoded once; the same film sent again (a rerun, the heatmap toggled) keeps
  // the reader's zoom, pan and window/level.
  s.load = async data => {
    const load = ++s.loads;
    stage.style.height = `${data.view}px`;
    const legend = root.querySelector('.legend');
    legend.hidden = !data.legend;
    if (data.legend) {
      legend.querySelector('.bar').style.background = `linear-gradient(to top, ${data.legend.join(', ')})`;
    }
    // onload, not Image.decode(): decode() may reject a valid image (Chromium, under load), losing the overlay
    const overlay = !data.overlay ? null : await new Promise(resolve => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => resolve(null);
      image.src = data.overlay;
    });
    let values = s.values;
    if (data.grey !== s.grey) values = await inflate(data.grey);
    if (load !== s.loads) return;  // a newer film arrived meanwhile
    if (data.grey !== s.grey) {
      Object.assign(s, {grey: data.grey, values, w: data.width, h: data.height, dirty: true});
      s.image = new ImageData(data.width, data.height);
      s.image.data.fill(255);
      buffer.width = data.width;
      buffer.height = data.height;
    }
    s.overlay = overlay;
    request();
  };
  return s;
}

export default function (component) {
  const root = component.parentElement.querySelector('.film');
  const s = root.__film = root.__film || setUp(root);
  s.observer.observe(s.canvas);
  s.load(component.data);
  return () => s.observer.disconnect();
}
"""

_film = st.components.v2.component("cxr_film", html=HTML, css=CSS, js=JS)


def film(data: dict, key: str, height: int) -> None:
    """Mount the film component with radiograph.film_data's `data`, its canvas `height` px high. `key` names the
    film: a new key (a new film) starts at zoom 1, level 0.5 and window 1."""
    _film(data={**data, "view": height}, key=key)
