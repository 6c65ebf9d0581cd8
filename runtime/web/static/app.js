// MambaLiteSR live viewer.
// stream.mjpg carries one JPEG per tick: bicubic (left half) | SR (right half), same size. It is read with
// fetch and split on each part's Content-Length, so every frame is counted and decoded once; reading the
// next part only after decoding this one lets TCP slow the server down for this viewer, which then skips
// frames instead of queueing them. The canvas shows the bicubic half left of the split and the SR half
// right of it; the lens magnifies the canvas under the pointer. /stats feeds the charts (incremental:
// ?since=SEQ), /summary the pipeline summary. Every request goes to this page's own origin (relative URLs;
// the server's Content-Security-Policy forbids anything else).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const canvas = $('canvas'), ctx = canvas.getContext('2d');
  const view = $('view'), handle = $('split'), lens = $('lens'), lensCtx = lens.getContext('2d');
  const statusEl = $('status');
  const STATS_MS = 500, SUMMARY_MS = 2000, RETRY_MS = 2000, MAX_POINTS = 240, LENS = 240;
  const STAGE_COLORS = {
    capture: '#90a4ae', preprocess: '#ffb74d', infer: '#4fc3f7', postprocess: '#ba68c8',
    sink: '#a1887f', end_to_end: '#e57373',
  };

  const state = {
    split: 0.5, lens: true, zoom: 4, pointer: null, dragging: false, dirty: false,
    bitmap: null, frames: 0, frameIndex: null, frameSeq: null, streamError: null,
    draws: 0, lastSeq: 0, polls: 0, pollErrors: 0, latest: null, connected: false,
  };

  // ---- video stream ----------------------------------------------------------------------------------
  const CRLF2 = [13, 10, 13, 10];

  function find(buf, pattern) {
    outer: for (let i = 0; i + pattern.length <= buf.length; i++) {
      for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
      return i;
    }
    return -1;
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  async function readStream() {
    const response = await fetch('stream.mjpg', { cache: 'no-store' });
    if (!response.ok) throw new Error('stream: HTTP ' + response.status);
    const reader = response.body.getReader();
    const text = new TextDecoder();
    let buf = new Uint8Array(0);
    const more = async () => {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buf = concat(buf, value);
    };
    for (;;) {
      let headEnd;
      while ((headEnd = find(buf, CRLF2)) < 0) await more();
      const head = text.decode(buf.subarray(0, headEnd));
      const length = /content-length:\s*(\d+)/i.exec(head);
      if (!length) throw new Error('stream: a part without Content-Length');
      const start = headEnd + 4, end = start + Number(length[1]);
      while (buf.length < end) await more();
      const jpeg = buf.slice(start, end);
      buf = buf.slice(end);
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: 'image/jpeg' }));
      if (state.bitmap) state.bitmap.close();
      state.bitmap = bitmap;
      state.frames += 1;
      const index = /x-frame-index:\s*(-?\d+)/i.exec(head), seq = /x-frame-seq:\s*(\d+)/i.exec(head);
      state.frameIndex = index ? Number(index[1]) : null;
      state.frameSeq = seq ? Number(seq[1]) : null;
      state.dirty = true;
    }
  }

  async function keepStreaming() {
    for (;;) {
      try {
        await readStream();
      } catch (err) {
        state.streamError = err.message;
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  function draw() {
    const bitmap = state.bitmap;
    if (state.dirty && bitmap) {
      state.dirty = false;
      const w = Math.floor(bitmap.width / 2), h = bitmap.height;
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w;
        canvas.height = h;
        fit();
      }
      const x = Math.round(state.split * w);
      if (x > 0) ctx.drawImage(bitmap, 0, 0, x, h, 0, 0, x, h);
      if (x < w) ctx.drawImage(bitmap, w + x, 0, w - x, h, x, 0, w - x, h);
      state.draws += 1;
      drawLens();
    }
    requestAnimationFrame(draw);
  }

  function fit() {
    // the whole picture in view: as wide as the page allows, at most 70% of the window's height
    const f = Math.min(view.parentElement.clientWidth / canvas.width, (window.innerHeight * 0.7) / canvas.height);
    canvas.style.width = Math.max(1, Math.floor(canvas.width * f)) + 'px';
    canvas.style.height = Math.max(1, Math.floor(canvas.height * f)) + 'px';
  }

  function setSplit(fraction) {
    state.split = Math.min(1, Math.max(0, fraction));
    handle.style.left = (state.split * 100).toFixed(2) + '%';
    handle.setAttribute('aria-valuenow', Math.round(state.split * 100));
    state.dirty = true;
  }

  function toCanvas(event) {
    const rect = canvas.getBoundingClientRect();
    return {
      fx: (event.clientX - rect.left) / rect.width,
      cssX: event.clientX - rect.left, cssY: event.clientY - rect.top,
      x: (event.clientX - rect.left) * canvas.width / rect.width,
      y: (event.clientY - rect.top) * canvas.height / rect.height,
    };
  }

  function drawLens() {
    const p = state.pointer;
    const show = state.lens && p && !state.dragging;
    lens.classList.toggle('hidden', !show);
    if (!show) return;
    lens.style.left = (p.cssX - LENS / 2) + 'px';
    lens.style.top = (p.cssY - LENS / 2) + 'px';
    // canvas pixels under the lens: it magnifies `zoom` times what the page shows
    const side = LENS / (state.zoom * (canvas.getBoundingClientRect().width / canvas.width));
    lensCtx.imageSmoothingEnabled = false;
    lensCtx.fillStyle = '#000';
    lensCtx.fillRect(0, 0, LENS, LENS);
    lensCtx.drawImage(canvas, p.x - side / 2, p.y - side / 2, side, side, 0, 0, LENS, LENS);
  }

  view.addEventListener('pointerdown', (e) => {
    state.dragging = true;
    view.setPointerCapture(e.pointerId);
    setSplit(toCanvas(e).fx);
    e.preventDefault();
  });
  view.addEventListener('pointermove', (e) => {
    const p = toCanvas(e);
    if (state.dragging) setSplit(p.fx);
    state.pointer = p;
    state.dirty = true;
  });
  const endDrag = (e) => {
    state.dragging = false;
    if (view.hasPointerCapture(e.pointerId)) view.releasePointerCapture(e.pointerId);
  };
  view.addEventListener('pointerup', endDrag);
  view.addEventListener('pointercancel', endDrag);
  view.addEventListener('pointerleave', () => {
    if (!state.dragging) state.pointer = null;
    state.dirty = true;
  });
  handle.addEventListener('keydown', (e) => {
    const step = e.shiftKey ? 0.1 : 0.02;
    if (e.key === 'ArrowLeft') setSplit(state.split - step);
    else if (e.key === 'ArrowRight') setSplit(state.split + step);
    else return;
    e.preventDefault();
  });
  $('lens-toggle').addEventListener('change', (e) => { state.lens = e.target.checked; state.dirty = true; });
  $('zoom').addEventListener('change', (e) => { state.zoom = Number(e.target.value); state.dirty = true; });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'z' && !e.ctrlKey && !e.metaKey && !e.altKey) {
      state.lens = !state.lens;
      $('lens-toggle').checked = state.lens;
      state.dirty = true;
    }
  });

  // ---- charts ---------------------------------------------------------------------------------------
  function makeChart(el, series, yLabel) {
    const axis = { stroke: '#8b95a3', grid: { stroke: '#2a3038' }, ticks: { stroke: '#2a3038' } };
    const opts = {
      width: Math.max(280, el.clientWidth), height: 200,
      scales: { x: { time: false } },
      axes: [Object.assign({ label: 's' }, axis), Object.assign({ label: yLabel, size: 50 }, axis)],
      series: [{ label: 't (s)' }].concat(series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5 }))),
      legend: { live: true },
    };
    const data = [[]].concat(series.map(() => []));
    const chart = new uPlot(opts, data, el);
    chart.keys = series.map((s) => s.key);
    chart.el = el;
    return chart;
  }

  const charts = {
    fps: makeChart($('chart-fps'), [{ key: 'fps', label: 'fps', color: '#4fc3f7' }], 'fps'),
    latency: makeChart($('chart-latency'), Object.keys(STAGE_COLORS).map(
      (k) => ({ key: 'ms.' + k, label: k.replace('_', '-'), color: STAGE_COLORS[k] })), 'ms'),
    watts: makeChart($('chart-watts'), [{ key: 'watts', label: 'W', color: '#aed581' }], 'W'),
  };

  function pick(point, key) {
    const v = key.startsWith('ms.') ? point.ms[key.slice(3)] : point[key];
    return typeof v === 'number' && isFinite(v) ? v : null;
  }

  function addPoints(points) {
    for (const chart of Object.values(charts)) {
      const data = chart.data.map((column) => column.slice());
      for (const p of points) {
        data[0].push(p.t);
        chart.keys.forEach((key, i) => data[i + 1].push(pick(p, key)));
      }
      const extra = data[0].length - MAX_POINTS;
      chart.setData(extra > 0 ? data.map((column) => column.slice(extra)) : data);
    }
    const measured = charts.watts.data[1].some((v) => v !== null);
    $('watts-note').textContent = measured ? '' : 'not measured: see power in the summary';
  }

  window.addEventListener('resize', () => {
    fit();
    for (const chart of Object.values(charts)) chart.setSize({ width: Math.max(280, chart.el.clientWidth), height: 200 });
  });

  // ---- polling -------------------------------------------------------------------------------------
  function setStatus(text, bad) {
    statusEl.textContent = text;
    statusEl.classList.toggle('bad', !!bad);
  }

  function fmt(v, digits) { return typeof v === 'number' ? v.toFixed(digits) : '--'; }

  async function pollStats() {
    try {
      const r = await fetch('stats?since=' + state.lastSeq, { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const body = await r.json();
      state.polls += 1;
      state.connected = true;
      if (body.history.length) {
        addPoints(body.history);
        state.lastSeq = body.history[body.history.length - 1].seq;
      }
      const p = body.latest;
      state.latest = p;
      if (!p) setStatus(state.streamError ? 'video: ' + state.streamError : 'connected; waiting for the first frame (warm-up)…');
      else if (body.age_s !== null && body.age_s > 2) setStatus(`no new frame for ${body.age_s.toFixed(1)} s (frame ${p.index})`, true);
      else setStatus(`frame ${p.index} · ${fmt(p.fps, 1)} fps · ${fmt(p.ms.end_to_end, 0)} ms end-to-end · `
        + `${p.frames_out ?? '--'} out, ${p.dropped ?? '--'} dropped`);
    } catch (err) {
      state.pollErrors += 1;
      state.connected = false;
      setStatus('disconnected from the camera process (' + err.message + ')', true);
    }
    setTimeout(pollStats, STATS_MS);
  }

  async function pollSummary() {
    try {
      const r = await fetch('summary', { cache: 'no-store' });
      if (r.ok) {
        const s = await r.json();
        const v = s.viewer || {};
        const pic = v.picture ? `${v.picture.width}x${v.picture.height} JPEG ${(v.picture.jpeg_bytes / 1024).toFixed(0)} KiB, `
          + `encoded in ${v.picture.encode_ms} ms` : 'no picture yet';
        const plan = s.plan ? `LR ${s.plan.lr.join('x')} -> x${s.plan.scale}, ${s.plan.tiles} tile(s) of ${s.plan.tile.join('x')}` : '';
        const lines = [`source:  ${s.source || '?'}`, `backend: ${s.backend || '?'}`];
        if (plan) lines.push(`plan:    ${plan}`);
        lines.push(`power:   ${s.power || '?'}`,
          `viewer:  ${v.viewers ?? 0} watching, ${v.encodes ?? 0} encodes (<= ${v.max_fps} fps, q${v.jpeg_quality}); ${pic}`,
          '', s.text || '');
        $('summary').textContent = lines.join('\n');
      }
    } catch (err) { /* pollStats reports the disconnection */ }
    setTimeout(pollSummary, SUMMARY_MS);
  }

  window.mlsrViewer = { state, charts, setSplit };
  setSplit(state.split);
  requestAnimationFrame(draw);
  keepStreaming();
  pollStats();
  pollSummary();
})();
