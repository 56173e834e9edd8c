// The training panel: train a copy of the model live and watch it learn — the loss and
// accuracy curves, the kernels as they change, and for any one weight the numbers of the
// last update. While a session exists, the whole page (overview, detail views, backward
// pass) shows the session's current weights: the store's `training` key carries it to
// every request (see state.js and api.js).
import { api, decodeArray } from './api.js';
import { diverging, fmt, legend } from './colors.js';
import { h, shapeText, svg } from './backward-ui.js';
import { byId, fill } from './dom.js';
import { updateView } from './training-update.js';

const POLL_MS = 300; // the session's state is asked for every this often while it trains
const DRAW_MS = 600; // kernels and the chosen weight's update: at most this often while it trains
const TAIL_POLLS = 2; // polls after training stops, for the last validation
const SMOOTHING = 0.9; // exponential moving average of the per-step numbers
const LEARNING_RATES = { sgd: 0.05, momentum: 0.01, adam: 0.001 };
const KERNEL_WIDTH = 340; // px a layer's kernel drawing may take at most
const MAX_POINTS = 2000; // points a curve draws at most

/** Append to `list` the entries of `entries` after its last step (answers overlap). */
function append(list, entries) {
  for (const entry of entries || []) {
    if (!list.length || entry.step > list[list.length - 1].step) list.push(entry);
  }
}

// -- curves -------------------------------------------------------------------------------

/** Ticks for [0, max]: about `count` round values (1, 2 or 5 × 10^k apart). */
function ticks(max, count = 5) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const values = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) values.push(Number(v.toPrecision(12)));
  return { step, values, top: values[values.length - 1] < max ? values[values.length - 1] + step : values[values.length - 1] };
}

/** The exponential moving average of `values`, corrected for its start (as TensorBoard's). */
function smooth(values) {
  let average = 0;
  return values.map((v, i) => {
    average = SMOOTHING * average + (1 - SMOOTHING) * v;
    return average / (1 - SMOOTHING ** (i + 1));
  });
}

const CHART = { width: 440, height: 210, left: 48, right: 12, top: 12, bottom: 36 };

/**
 * One curve chart as SVG: the training batches' values (faint), their moving average and
 * the validation points, over the steps; `percent` shows [0, 1] as 0–100 %.
 */
function drawChart(element, { name, key, percent, history, validation }) {
  const { width, height, left, right, top, bottom } = CHART;
  const steps = history.length ? history[history.length - 1].step : 0;
  const x = ticks(Math.max(10, steps, ...validation.map((v) => v.step)));
  const values = [...history.map((e) => e[key]), ...validation.map((e) => e[key])].filter(Number.isFinite);
  // before any step, a loss axis of 0–1 (not 0–1e-6, whose ticks read "0.000001" and "5e-7")
  const y = percent ? { values: [0, 0.25, 0.5, 0.75, 1], top: 1 } : ticks(values.length ? Math.max(1e-6, ...values) : 1, 4);
  const px = (step) => left + ((width - left - right) * step) / x.top;
  const py = (value) => top + (height - top - bottom) * (1 - Math.min(1, value / y.top));
  const label = (v) => (percent ? `${Math.round(100 * v)} %` : fmt(v, 3));
  const smoothed = smooth(history.map((e) => e[key]));
  const every = Math.ceil(history.length / MAX_POINTS); // long runs: every k-th step (and the last)
  const line = (entries, pick) => entries.flatMap((e, i) => (i % every && i !== entries.length - 1 ? []
    : [`${px(e.step).toFixed(1)},${py(pick(e, i)).toFixed(1)}`])).join(' ');
  const last = history[history.length - 1];
  const lastVal = validation[validation.length - 1];
  const summary = `${name} over ${steps} steps`
    + (last ? `: last batch ${label(last[key])}, moving average ${label(smoothed[smoothed.length - 1])}` : '')
    + (lastVal ? `; validation ${label(lastVal[key])} at step ${lastVal.step}` : '');
  element.setAttribute('aria-label', summary);
  element.replaceChildren(
    svg('title', {}, summary),
    svg('g', { class: 'tr-grid' },
      y.values.map((v) => svg('line', { x1: left, x2: width - right, y1: py(v), y2: py(v) })),
      x.values.map((v) => svg('line', { x1: px(v), x2: px(v), y1: top, y2: height - bottom }))),
    svg('g', { class: 'tr-axis' },
      svg('line', { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }),
      svg('line', { x1: left, x2: left, y1: top, y2: height - bottom }),
      y.values.map((v) => svg('text', { x: left - 6, y: py(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, label(v))),
      x.values.map((v) => svg('text', { x: px(v), y: height - bottom + 14, 'text-anchor': 'middle' }, String(v))),
      svg('text', { class: 'tr-axis-title', x: (left + width - right) / 2, y: height - 4, 'text-anchor': 'middle' }, 'step'),
      svg('text', { class: 'tr-axis-title', transform: `translate(12 ${(top + height - bottom) / 2}) rotate(-90)`, 'text-anchor': 'middle' }, name)),
    svg('polyline', { class: 'tr-raw', points: line(history, (e) => e[key]), 'data-points': history.length }),
    svg('polyline', { class: 'tr-smooth', points: line(history, (e, i) => smoothed[i]) }),
    svg('g', { class: 'tr-validation' }, validation.map((e) => svg('circle', { cx: px(e.step), cy: py(e[key]), r: 3.5 },
      svg('title', {}, `validation at step ${e.step}: ${label(e[key])}`)))),
  );
  element.dataset.points = String(history.length);
  element.dataset.validation = String(validation.length);
}

// -- kernels ------------------------------------------------------------------------------

/**
 * Where each value of a parameter array sits in its drawing, one pixel per value: an
 * (out, in, kh, kw) weight as kernels side by side with a gap between them (a kernel's in
 * channels next to each other), an (out, in) weight as a matrix, a vector in rows of 32.
 * Returns {width, height, scale, at(k) -> [row, col] of flat value k, indexAt(row, col) -> index or null}.
 */
function kernelLayout(shape) {
  if (shape.length !== 4) {
    const n = shape.reduce((a, b) => a * b, 1);
    const cols = shape.length === 2 ? shape[1] : Math.min(n, 32);
    const rows = Math.ceil(n / cols);
    return {
      width: cols, height: rows,
      scale: Math.max(1, Math.min(10, Math.floor(KERNEL_WIDTH / cols), Math.floor(160 / rows))),
      at: (k) => [Math.floor(k / cols), k % cols],
      indexAt: (row, col) => (shape.length === 2 ? [row, col] : row * cols + col < n ? [row * cols + col] : null),
    };
  }
  const [O, C, kh, kw] = shape;
  const perLine = Math.max(1, Math.min(O, Math.floor(8 / C))); // kernels per line
  const spacer = C > 1 ? 1 : 0; // an extra pixel between kernels of several channels
  const group = C * (kw + 1) + spacer; // px across one kernel and its gaps
  const lines = Math.ceil(O / perLine);
  const width = perLine * group - 1 - spacer;
  const height = lines * (kh + 1) - 1;
  return {
    width, height,
    scale: Math.max(1, Math.min(10, Math.floor(KERNEL_WIDTH / width), Math.floor(420 / height))),
    at: (k) => {
      const [o, c, a, b] = [Math.floor(k / (kw * kh * C)), Math.floor(k / (kw * kh)) % C, Math.floor(k / kw) % kh, k % kw];
      return [Math.floor(o / perLine) * (kh + 1) + a, (o % perLine) * group + c * (kw + 1) + b];
    },
    indexAt: (row, col) => {
      const [a, inside] = [row % (kh + 1), col % group];
      const [c, b] = [Math.floor(inside / (kw + 1)), inside % (kw + 1)];
      const o = Math.floor(row / (kh + 1)) * perLine + Math.floor(col / group);
      return a < kh && b < kw && c < C && o < O ? [o, c, a, b] : null;
    },
  };
}

/** The row-major position of `index` in an array of `shape`. */
const flatIndex = (shape, index) => index.reduce((k, i, axis) => k * shape[axis] + i, 0);

/** Paint `array` into `canvas` by `layout` (gaps transparent), colours up to ±limit. */
function paintKernels(canvas, array, layout, limit) {
  canvas.width = layout.width;
  canvas.height = layout.height;
  const context = canvas.getContext('2d');
  const image = context.createImageData(layout.width, layout.height);
  for (let k = 0; k < array.data.length; k++) {
    const [row, col] = layout.at(k); // gaps stay transparent
    image.data.set([...diverging(array.data[k], limit), 255], 4 * (row * layout.width + col));
  }
  context.putImageData(image, 0, 0);
}

/** The kernel drawings: one figure per layer with parameters the server sends. */
function kernelViews(model, pick) {
  const element = h('div', { class: 'tr-kernels' });
  const readout = h('p', { class: 'muted small tr-kernel-readout' }, 'Hover a kernel for its values; click one to see how the last step changed it.');
  const drawings = new Map(); // `${layer}:${parameter}` -> {canvas, marker, layout, array}
  let chosen = null;

  const figure = (layer, parameter, array) => {
    const layout = kernelLayout(array.shape);
    const canvas = h('canvas', {
      class: 'tr-kernel-map', 'data-layer': layer, 'data-parameter': parameter, role: 'img',
      'aria-label': `layer ${layer} ${parameter}, ${shapeText(array.shape)}: click a value to pick it`,
      style: `width:${layout.width * layout.scale}px;height:${layout.height * layout.scale}px`,
    });
    const marker = h('span', { class: 'tr-kernel-marker', hidden: true });
    const drawing = { canvas, marker, layout, array, layer, parameter };
    const indexOf = (event) => {
      const row = Math.floor((event.offsetY / canvas.clientHeight) * layout.height);
      const col = Math.floor((event.offsetX / canvas.clientWidth) * layout.width);
      return layout.indexAt(Math.min(row, layout.height - 1), Math.min(col, layout.width - 1));
    };
    canvas.addEventListener('pointermove', (event) => {
      const index = indexOf(event);
      if (!index) return;
      const flat = flatIndex(drawing.array.shape, index);
      readout.textContent = `layer ${layer} · ${parameter}[${index.join(', ')}] = ${fmt(drawing.array.data[flat], 6)}`;
    });
    canvas.addEventListener('click', (event) => {
      const index = indexOf(event);
      if (index) pick({ layer, parameter, index });
    });
    drawings.set(`${layer}:${parameter}`, drawing);
    return h('span', { class: 'tr-kernel-wrap' }, canvas, marker);
  };

  const place = () => {
    for (const drawing of drawings.values()) drawing.marker.hidden = true;
    const drawing = chosen && drawings.get(`${chosen.layer}:${chosen.parameter}`);
    if (!drawing || chosen.index.length !== drawing.array.shape.length) return;
    const [row, col] = drawing.layout.at(flatIndex(drawing.array.shape, chosen.index));
    Object.assign(drawing.marker.style, {
      top: `${(100 * row) / drawing.layout.height}%`, left: `${(100 * col) / drawing.layout.width}%`,
      width: `${100 / drawing.layout.width}%`, height: `${100 / drawing.layout.height}%`,
    });
    drawing.marker.hidden = false;
  };

  return {
    element: h('div', {}, element, readout),
    /** Draw {step, layers: [{weight, bias} or {}]}: the figures are built once, then repainted. */
    draw(payload) {
      if (!drawings.size) {
        const figures = payload.layers.flatMap((params, layer) => (Object.keys(params).length ? [h('figure', { class: 'tr-kernel-layer', 'data-layer': layer },
          h('figcaption', {}, h('strong', {}, `layer ${layer} · ${model.layers[layer].label}`), h('span', { class: 'tr-kernel-legend' })),
          Object.entries(params).map(([parameter, array]) => h('div', { class: 'tr-kernel-row' },
            h('span', { class: 'muted small' }, `${parameter} ${shapeText(array.shape)}`), figure(layer, parameter, decodeArray(array)))))] : []));
        fill(element, figures.length ? figures : h('p', { class: 'muted' }, 'This model has no small kernels to draw.'));
      }
      payload.layers.forEach((params, layer) => {
        const arrays = Object.fromEntries(Object.entries(params).map(([name, array]) => [name, decodeArray(array)]));
        const limit = Math.max(1e-12, ...Object.values(arrays).map((a) => a.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
        for (const [parameter, array] of Object.entries(arrays)) {
          const drawing = drawings.get(`${layer}:${parameter}`);
          if (!drawing) continue;
          drawing.array = array;
          paintKernels(drawing.canvas, array, drawing.layout, limit);
        }
        const key = element.querySelector(`.tr-kernel-layer[data-layer='${layer}'] .tr-kernel-legend`);
        if (key) key.replaceChildren(legend(limit, 'weight'));
      });
      element.dataset.step = String(payload.step);
      place();
    },
    choose(value) {
      chosen = value;
      place();
    },
    clear() {
      drawings.clear();
      fill(element, h('p', { class: 'muted' }, 'The kernels appear here once training starts.'));
    },
  };
}

// -- the panel ----------------------------------------------------------------------------

export function mount(element, store) {
  const model = store.get('model');
  const id = (name) => `tr-${name}`;
  const field = (text, control) => h('label', { class: 'tr-field', for: control.id }, h('span', {}, text), control);

  // settings: fixed for a session (reset to change them)
  const optimizer = h('select', { id: id('optimizer') },
    h('option', { value: 'sgd' }, 'SGD'), h('option', { value: 'momentum' }, 'SGD with momentum'), h('option', { value: 'adam' }, 'Adam'));
  const lr = h('input', { id: id('lr'), type: 'number', min: '0', max: '10', step: 'any', value: String(LEARNING_RATES.sgd), required: true });
  const momentum = h('input', { id: id('momentum'), type: 'number', min: '0', max: '0.999', step: '0.05', value: '0.9', required: true });
  const batch = h('input', { id: id('batch'), type: 'number', min: '1', max: '512', step: '1', value: '32', required: true });
  const fresh = h('input', { id: id('fresh'), type: 'radio', name: id('weights'), value: 'fresh', checked: true });
  const loaded = h('input', { id: id('loaded'), type: 'radio', name: id('weights'), value: 'loaded' });
  const seed = h('input', { id: id('seed'), type: 'number', min: '0', step: '1', value: '0', required: true, 'aria-label': 'seed of the fresh weights' });
  const momentumField = field('momentum μ', momentum);
  const settings = h('form', { class: 'tr-settings', 'aria-label': 'Training settings', onsubmit: (e) => e.preventDefault() },
    h('fieldset', {},
      h('legend', {}, 'Settings'),
      field('optimizer', optimizer), field('learning rate η', lr), momentumField, field('batch size', batch),
      h('div', { class: 'tr-start-weights', role: 'radiogroup', 'aria-label': 'Start from' },
        h('label', { for: fresh.id }, fresh, ' fresh weights, seed '), seed,
        h('label', { for: loaded.id }, loaded, ' the loaded weights'))));
  const fieldset = settings.firstChild;

  // actions
  const button = (name, text, onclick) => h('button', { type: 'button', id: id(name), onclick }, text);
  const startButton = button('start', 'Start training', () => act(start));
  const pauseButton = button('pause', 'Pause', () => act(pause));
  const stepButton = button('step', 'One step', () => act(stepOnce));
  const resetButton = button('reset', 'Reset', () => act(reset));
  const keepName = h('input', { id: id('keep-name'), type: 'text', placeholder: 'file name (optional)', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]*', 'aria-label': 'file name for the kept model (optional)' });
  const keepButton = button('keep', 'Keep this model', () => act(keep));
  const kept = h('output', { id: id('kept'), class: 'tr-kept', for: keepButton.id });
  const status = h('p', { id: id('status'), class: 'tr-status', role: 'status', 'aria-live': 'polite' });
  const progress = h('p', { id: id('progress'), class: 'tr-progress' });

  const chart = (name) => svg('svg', { id: id(name), class: 'tr-chart', viewBox: `0 0 ${CHART.width} ${CHART.height}`, role: 'img' });
  const lossChart = chart('loss');
  const accuracyChart = chart('accuracy');
  const key = h('p', { class: 'tr-chart-key muted small' },
    h('span', { class: 'tr-key-raw' }), ' each training batch ', h('span', { class: 'tr-key-smooth' }), ' moving average ',
    h('span', { class: 'tr-key-validation' }), ' held-out images (validation)');

  const kernels = kernelViews(model, (value) => chooseWeight(value));
  const update = updateView(model, (value) => kernels.choose(value));
  const chooseWeight = (value) => {
    update.choose(value);
    refreshUpdate(true);
  };
  const badge = byId('weights-badge');

  element.replaceChildren(
    h('h2', {}, 'Train the network live'),
    h('p', { class: 'tr-intro muted' },
      'Train a copy of this model on its dataset and watch it learn. While a session exists, ',
      'everything on this page — the overview, every detail view and the backward pass — uses its current weights, ',
      'so you see the activations and the prediction change as it learns. The loaded model itself never changes; Reset returns to it.'),
    h('div', { class: 'tr-top' },
      h('div', { class: 'tr-controls' },
        settings,
        h('div', { class: 'tr-buttons', role: 'group', 'aria-label': 'Training' }, startButton, pauseButton, stepButton, resetButton),
        h('div', { class: 'tr-keep' }, keepName, keepButton, kept),
        status, progress),
      h('div', { class: 'tr-charts' },
        h('figure', {}, h('figcaption', {}, 'Loss (cross-entropy)'), lossChart),
        h('figure', {}, h('figcaption', {}, 'Accuracy'), accuracyChart),
        key)),
    h('div', { class: 'tr-bottom' },
      h('section', { class: 'tr-kernel-pane', 'aria-label': 'The kernels as they change' },
        h('h3', {}, 'The weights as they change'), kernels.element),
      h('section', { class: 'tr-update-pane', 'aria-label': 'What the last step did to one weight' },
        h('h3', {}, 'What the last step did to one weight'), update.element)));

  let options = null; // GET /api/training
  let session = null; // the latest state of the session (without its history)
  let history = [];
  let validation = [];
  let generation = 0; // bumped when a session ends: answers about an older one are dropped
  let busy = false;
  let timer = null;
  let polling = false;
  let tail = 0;
  let lastDraw = -Infinity;
  let kernelsBusy = false;
  let updateBusy = false;
  let updateSeq = 0;

  const settingsBody = () => ({
    optimizer: optimizer.value === 'adam' ? 'adam' : 'sgd',
    lr: Number(lr.value),
    momentum: optimizer.value === 'momentum' ? Number(momentum.value) : 0,
    batch_size: Number(batch.value),
    fresh: fresh.checked,
    seed: Number(seed.value),
    ...(options.default ? { dataset: options.default } : {}),
  });

  optimizer.addEventListener('change', () => {
    lr.value = String(LEARNING_RATES[optimizer.value]);
    render();
  });
  fresh.addEventListener('change', render);
  loaded.addEventListener('change', render);

  /** Run one action at a time; its errors go to the status line. */
  async function act(action) {
    if (busy) return;
    busy = true;
    element.classList.add('busy');
    try {
      await action();
    } catch (error) {
      say(error.message, true);
    } finally {
      busy = false;
      element.classList.remove('busy');
      render();
    }
  }

  function say(text, error = false) {
    status.textContent = text;
    status.classList.toggle('tr-error', error);
  }

  /** What to ask the server for: the history from the last step the page has (its entry
   * again, so that a step taken meanwhile is never missed; `append` drops repeats). */
  function since() {
    return Math.max(0, (history.length ? history[history.length - 1].step : 0) - 1);
  }

  /** Take in a state from the server: its new history, its step; the page follows. */
  function absorb(state, gen = generation) {
    if (gen !== generation || !session || state.id !== session.id) return;
    append(history, state.history);
    append(validation, state.validation);
    const { history: _h, validation: _v, ...rest } = state;
    const stepped = rest.step !== session.step;
    session = rest;
    store.set({ training: { id: rest.id, step: rest.step, running: rest.running } });
    if (rest.error) say(rest.error, true);
    render();
    if (stepped) drawCharts();
  }

  async function create() {
    if (!settings.reportValidity()) throw new Error('check the settings first');
    const state = await api.training.start(settingsBody());
    generation += 1;
    session = { id: state.id, step: -1 }; // absorb() takes it in as news
    history = [];
    validation = [];
    update.reset();
    kernels.clear();
    absorb(state);
    await refreshKernels();
  }

  async function start() {
    const focused = startButton.getRootNode().activeElement === startButton; // the document, or a widget's shadow root
    if (!session) await create();
    const gen = generation;
    absorb(await api.training.run(session.id, since()), gen);
    say(`Training on ${session.dataset}: the whole page now shows the weights as they learn.`);
    poll();
    if (focused) requestAnimationFrame(() => pauseButton.focus()); // the start button is disabled now
  }

  async function pause() {
    const focused = pauseButton.getRootNode().activeElement === pauseButton; // the document, or a widget's shadow root
    const gen = generation;
    absorb(await api.training.pause(session.id, since()), gen);
    say(`Paused after step ${session.step}.`);
    refreshUpdate(true);
    refreshKernels();
    if (focused) requestAnimationFrame(() => startButton.focus());
  }

  async function stepOnce() {
    if (!session) await create();
    const gen = generation;
    absorb(await api.training.step(session.id, 1, since()), gen);
    say(`Took step ${session.step}.`);
    await Promise.all([refreshKernels(), refreshUpdate(true)]);
  }

  async function reset() {
    const ending = session;
    stopPolling();
    generation += 1;
    session = null;
    history = [];
    validation = [];
    update.reset();
    kernels.clear();
    drawCharts();
    store.set({ training: null }); // the page returns to the served model
    if (ending) await api.training.remove(ending.id).catch(() => {}); // it may have expired
    say('Reset: the page shows the loaded model again.');
  }

  async function keep() {
    if (!keepName.reportValidity()) return;
    const { path } = await api.training.keep(session.id, keepName.value.trim() || null);
    kept.textContent = `saved as ${path}`;
    kept.dataset.path = path;
    say(`Kept the model after step ${session.step}: ${path}`);
  }

  // -- polling: one request at a time, every POLL_MS while it trains -------------------
  function stopPolling() {
    clearTimeout(timer);
    timer = null;
    tail = 0;
  }

  async function poll() {
    if (polling || timer !== null || !session) return;
    const gen = generation;
    const began = performance.now();
    polling = true;
    try {
      absorb(await api.training.state(session.id, since()), gen);
    } catch (error) {
      if (gen === generation) say(`The training session stopped answering: ${error.message}`, true);
      return;
    } finally {
      polling = false;
    }
    if (gen !== generation || !session) return;
    if (session.running) {
      tail = TAIL_POLLS;
      if (performance.now() - lastDraw >= DRAW_MS) {
        lastDraw = performance.now();
        refreshKernels();
        refreshUpdate();
      }
    } else {
      tail -= 1;
      if (tail < 0) return;
    }
    timer = setTimeout(() => {
      timer = null;
      poll();
    }, Math.max(0, POLL_MS - (performance.now() - began)));
  }

  async function refreshKernels() {
    if (kernelsBusy || !session) return;
    const gen = generation;
    kernelsBusy = true;
    try {
      const payload = await api.training.kernels(session.id);
      if (gen === generation) kernels.draw(payload);
    } catch (error) {
      if (gen === generation) say(`The kernels could not be read: ${error.message}`, true);
    } finally {
      kernelsBusy = false;
    }
  }

  /** Ask how the last step changed the chosen weight (`now`: even if one such request runs). */
  async function refreshUpdate(now = false) {
    if (!session || (updateBusy && !now)) return;
    const seq = ++updateSeq;
    const gen = generation;
    if (session.step <= 0) {
      update.show(null);
      return;
    }
    updateBusy = true;
    try {
      const payload = await api.training.update(session.id, update.chosen());
      if (seq === updateSeq && gen === generation) update.show(payload, session && session.settings.batch_size);
    } catch (error) {
      if (seq === updateSeq && gen === generation) update.failed(error.message);
    } finally {
      if (seq === updateSeq) updateBusy = false;
    }
  }
  update.onchange(() => refreshUpdate(true));

  // -- drawing ---------------------------------------------------------------------------
  function drawCharts() {
    drawChart(lossChart, { name: 'loss', key: 'loss', percent: false, history, validation });
    drawChart(accuracyChart, { name: 'accuracy', key: 'accuracy', percent: true, history, validation });
    const last = history[history.length - 1];
    const val = validation[validation.length - 1];
    progress.replaceChildren(...(session ? [
      h('span', {}, 'step ', h('strong', { 'data-role': 'step' }, String(session.step))),
      h('span', {}, `epoch ${fmt(session.epoch, 3)}`),
      last ? h('span', {}, `last batch: loss ${fmt(last.loss, 3)}, accuracy ${fmt(100 * last.accuracy, 3)} %`) : null,
      val ? h('span', {}, `validation (step ${val.step}): loss ${fmt(val.loss, 3)}, accuracy ${fmt(100 * val.accuracy, 3)} %`) : null,
    ].filter(Boolean) : []));
  }

  function render() {
    const unavailable = !options || options.message;
    const running = Boolean(session && session.running);
    const broken = Boolean(session && session.error);
    element.dataset.state = unavailable ? 'unavailable' : !session ? 'idle' : running ? 'running' : 'paused';
    element.dataset.session = session ? session.id : '';
    element.dataset.step = session ? String(session.step) : '';
    fieldset.disabled = Boolean(unavailable || session);
    momentumField.hidden = optimizer.value !== 'momentum';
    seed.disabled = loaded.checked;
    startButton.textContent = session && session.step > 0 ? 'Continue' : 'Start training';
    startButton.disabled = Boolean(unavailable || running || broken);
    pauseButton.disabled = !running;
    stepButton.disabled = Boolean(unavailable || running || broken);
    resetButton.disabled = !session;
    keepButton.disabled = keepName.disabled = !session || session.step <= 0;
    if (badge) {
      badge.hidden = !session;
      badge.textContent = session ? `weights: training, step ${session.step}${running ? ' (learning)' : ''}` : '';
    }
  }

  // a session ends with the page (sessions are few: the server holds at most four)
  window.addEventListener('pagehide', (event) => session && !event.persisted && api.training.leave(session.id));

  kernels.clear();
  drawCharts();
  render();
  return api.training.options().then((answer) => {
    options = answer;
    if (options.message) say(options.message, true);
    else say(`Not training: the page shows the loaded model. Start trains a copy on ${options.default}.`);
    render();
  }, (error) => {
    options = { message: `Training is not available: ${error.message}` };
    say(options.message, true);
    render();
  });
}
