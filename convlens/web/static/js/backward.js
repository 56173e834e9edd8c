// The backward pass: pick a target class, see the loss and p − y at the scores, then
// dL/d(every layer's output) from the scores back to the image. Clicking a value of a
// gradient map asks the layer that consumes it how it computed that value
// (POST /api/explain with a target), drawn by backward-detail.js. A convolution's input
// gradient slides: the rotated kernel moves over δ̃ (play / step / hover) with the forward
// view's scanner, and below it any weight's or bias's own gradient is shown number by number.
import { api } from './api.js';
import { colourLimit, css, fmt, inputChannel, legend, paintValues } from './colors.js';
import { dL, escape, h, math, mn, shapeText } from './backward-ui.js';
import { renderDetail } from './backward-detail.js';
import { scanner } from './forward-scan.js';
import { findAll } from './dom.js';

/** How a gradient of `shape` is laid out: channels of rows × cols (vectors wrap at 64). */
function mapLayout(shape) {
  if (shape.length >= 3) {
    const [channels, rows, cols] = shape.slice(-3);
    return { channels, rows, cols, size: rows * cols, vector: false };
  }
  const size = shape.reduce((a, b) => a * b, 1);
  const cols = Math.min(size, 64);
  return { channels: 1, rows: Math.ceil(size / cols), cols, size, vector: true };
}

/** Screen pixels per value: big maps for few channels, small ones for many. */
function cellSize(layout) {
  if (layout.vector) return Math.max(2, Math.floor(Math.min(24, 512 / layout.cols, 160 / layout.rows)));
  const target = layout.channels <= 4 ? 140 : layout.channels <= 16 ? 56 : layout.channels <= 64 ? 44 : 28;
  return Math.max(1, Math.round(target / Math.max(layout.rows, layout.cols)));
}

export function mount(element, store) {
  const picker = h('select', { id: 'target-class', 'aria-describedby': 'bw-loss' });
  const loss = h('div', { id: 'bw-loss', class: 'bw-loss', 'aria-live': 'polite' });
  const scores = h('div', { class: 'bw-scores' });
  const ladder = h('div', { class: 'bw-ladder' });
  const pane = h('aside', { class: 'bw-detail-pane', 'aria-label': 'How the chosen gradient value was computed' });
  element.replaceChildren(
    h('h2', {}, 'Backward pass: how the network would learn from this image'),
    h('p', { class: 'bw-intro' },
      'Pick the class the network should answer. The loss L = −log p(target) says how wrong it is; ',
      'its gradient flows from the scores back to the pixels. Each map shows dL/d(a layer\'s output): ',
      h('span', { class: 'swatch-pos' }, 'orange'), ' — raising this value would raise the loss, ',
      h('span', { class: 'swatch-neg' }, 'blue'), ' — raising it would lower the loss. ',
      'Gradient descent moves every value against its gradient.'),
    h('div', { class: 'bw-top' },
      h('div', { class: 'bw-target' },
        h('label', { for: 'target-class' }, 'Target class'), picker, loss),
      scores),
    h('div', { class: 'bw-body' }, ladder, pane),
  );
  /** Trace again for `target`; the view stays dimmed until the answer (or an error) comes. */
  let asking = 0; // backward passes asked for and not yet answered
  const retarget = (target) => {
    element.classList.add('busy');
    delete element.dataset.target; // until the gradients for it are drawn
    store.set({ target });
    asking += 1;
    store.retrace({ full: true }).finally(() => {
      asking -= 1;
      element.classList.remove('busy');
    });
  };
  picker.addEventListener('change', () => retarget(Number(picker.value)));

  let lastImage;
  let selection = null; // {tensor, channel, row, col, layer, index, moveCursor}
  let explainSeq = 0;
  let scan = null; // the sliding rotated kernel of a convolution's input gradient
  const memories = new Map(); // per gradient map: scan position, playing, chosen parameter
  const model = () => store.get('model');
  // The gradient at the class scores: the last output, or the input of a final softmax.
  const scoresTensor = () => model().layers.length - (model().ends_with_softmax ? 2 : 1);

  /** The class index of the sample's label, or −1 when the image is not a labelled sample. */
  function trueLabel() {
    const image = store.get('image');
    const sample = typeof image === 'number' ? store.get('samples')[image] : null;
    return sample ? model().classes.indexOf(sample.label) : -1;
  }
  const defaultTarget = (trace) => (trueLabel() >= 0 ? trueLabel() : trace.prediction);

  // While this view is scrolled away, traces leave the gradients out (half their size: a
  // click elsewhere answers sooner), and the gradient maps wait; once the view is seen, the
  // backward pass of the newest image is asked for and drawn.
  const onScreen = () => {
    const box = element.getBoundingClientRect();
    return box.bottom > 0 && box.top < window.innerHeight;
  };
  let visible = onScreen();
  store.set({ gradientsWanted: visible });
  let unseen = null;
  new IntersectionObserver(([entry]) => {
    visible = entry.isIntersecting;
    store.set({ gradientsWanted: visible });
    const trace = store.get('trace');
    if (visible && trace && !trace.gradients) complete(trace);
    else if (visible && unseen) {
      drawLadder(unseen);
      unseen = null;
    }
  }).observe(element);

  /** The backward pass for a trace that left it out: for the target, or the default one. */
  const complete = (trace) => {
    if (!asking) retarget(store.get('target') ?? defaultTarget(trace));
  };

  store.subscribe('trace', (trace) => {
    if (store.get('image') !== lastImage) {
      lastImage = store.get('image');
      selection = null;
      scan?.destroy();
      scan = null;
      memories.clear();
    }
    if (!trace.gradients) { // left out (or no target yet): the picker now, the rest once seen
      const shown = { ...trace, target: trace.target ?? defaultTarget(trace) };
      element.dataset.target = String(shown.target);
      drawPicker(shown);
      drawScores(shown);
      if (visible) complete(trace);
      return;
    }
    render(trace);
    if (selection) explain();
  });
  store.subscribe('gradients', (trace) => { // the shown trace's backward pass came, or its target changed
    render(trace);
    if (selection) explain();
  });
  store.subscribe('rangeMode', () => store.get('trace')?.gradients && drawLadder(store.get('trace')));

  function render(trace) {
    element.dataset.target = String(trace.target);
    drawPicker(trace);
    drawScores(trace);
    if (visible) drawLadder(trace);
    else unseen = trace;
    if (!selection) {
      pane.replaceChildren(h('div', { class: 'bw-placeholder' },
        h('h3', {}, 'Click a value in a gradient map'),
        h('p', {}, 'Every map (but the scores) is the gradient at the input of the layer above it. ',
          'Click a pixel — or focus a map with Tab, move with the arrow keys and press Enter — ',
          'to see how that layer\'s backward pass computed it: the rotated kernel of a convolution, ',
          'the argmax mask of a max-pool, f′(x) of an activation, the weights of a dense layer.')));
    }
  }

  function drawPicker(trace) {
    const label = trueLabel();
    picker.replaceChildren(...model().classes.map((name, k) => {
      const notes = [k === label ? 'true label' : null, k === trace.prediction ? 'predicted' : null].filter(Boolean);
      return h('option', { value: k }, notes.length ? `${name} (${notes.join(', ')})` : name);
    }));
    picker.value = String(trace.target);
    const p = trace.probabilities[trace.target];
    const pt = `<msub><mi>p</mi><mtext>${escape(model().classes[trace.target])}</mtext></msub>`;
    loss.replaceChildren(
      h('span', { class: 'bw-loss-label' }, 'loss'),
      math(`<mi>L</mi><mo>=</mo><mo>−</mo><mi>log</mi><mspace width=".2em"/>${pt}<mo>=</mo><mo>−</mo><mi>log</mi><mspace width=".2em"/>${mn(p)}`),
      h('span', { class: 'bw-loss-value', 'data-value': String(trace.loss ?? -Math.log(p)) }, fmt(trace.loss ?? -Math.log(p))),
    );
  }

  /** p − y at the scores, with the probabilities, the one-hot target and their difference. */
  function drawScores(trace) {
    const { classes } = model();
    // p − y: the engine's gradient at the scores, or (before it came) p less the one-hot target
    const gradient = trace.gradients ? trace.gradients[scoresTensor()].data
      : trace.probabilities.map((p, k) => p - (k === trace.target ? 1 : 0));
    const many = classes.length > 20;
    const shown = many
      ? [...new Set([trace.target, ...trace.probabilities.map((p, k) => [p, k]).sort((a, b) => b[0] - a[0]).slice(0, 9).map(([, k]) => k)])].sort((a, b) => a - b)
      : classes.map((_, k) => k);
    const scale = Math.max(1e-12, ...shown.map((k) => Math.abs(gradient[k])));
    const bar = (value, kind) => h('span', { class: `bar bar-${kind}` }, h('span', {
      style: kind === 'p' ? `width:${100 * value}%`
        : `width:${(50 * Math.abs(value)) / scale}%;${value < 0 ? 'right:50%' : 'left:50%'}`,
      class: value < 0 ? 'neg' : 'pos',
    }));
    const rows = shown.map((k) => {
      const y = k === trace.target ? 1 : 0;
      return h('tr', { 'data-role': 'p-minus-y', 'data-class': k, class: y ? 'is-target' : null },
        h('th', { scope: 'row' }, classes[k]),
        h('td', { 'data-role': 'p', 'data-value': String(trace.probabilities[k]) }, fmt(trace.probabilities[k], 3), bar(trace.probabilities[k], 'p')),
        h('td', { 'data-role': 'y', 'data-value': String(y) }, String(y)),
        h('td', { 'data-role': 'diff', 'data-value': String(gradient[k]) }, fmt(gradient[k], 3), bar(gradient[k], 'd')));
    });
    scores.replaceChildren(
      h('h3', {}, 'At the scores: p − y'),
      math(`<mrow>${dL('<msub><mi>z</mi><mi>k</mi></msub>')}<mo>=</mo><msub><mi>p</mi><mi>k</mi></msub><mo>−</mo><msub><mi>y</mi><mi>k</mi></msub></mrow><mspace width="1em"/><mtext>with</mtext><mspace width=".5em"/><msub><mi>p</mi><mi>k</mi></msub><mo>=</mo><mfrac><msup><mi>e</mi><msub><mi>z</mi><mi>k</mi></msub></msup><mrow><msub><mo>∑</mo><mi>j</mi></msub><msup><mi>e</mi><msub><mi>z</mi><mi>j</mi></msub></msup></mrow></mfrac><mo>,</mo><mspace width=".5em"/><msub><mi>y</mi><mi>k</mi></msub><mo>=</mo><mn>1</mn><mtext>&#160;for the target, else&#160;</mtext><mn>0</mn>`, true),
      h('p', { class: 'muted small' }, 'Softmax and cross-entropy together have this simple gradient: every class\'s score is pushed down by its probability, the target\'s pulled up by 1 − p. (The p − y bars are drawn relative to the largest |p − y|.)'
        + (many ? ` Showing the target and the 9 most likely of ${classes.length} classes.` : '')),
      h('table', { class: 'pmy' },
        h('thead', {}, h('tr', {}, h('th', {}, 'class'), h('th', {}, 'p (probability)'), h('th', {}, 'y (one-hot)'), h('th', {}, 'p − y'))),
        h('tbody', {}, rows)));
  }

  /** One row per gradient, from the scores down to the input image, with the layers between. */
  function drawLadder(trace) {
    const layers = model().layers;
    const arrays = [...trace.gradients, trace.input_gradient];
    const parts = [];
    for (let t = scoresTensor(); t >= -1; t--) {
      const gradient = t < 0 ? trace.input_gradient : trace.gradients[t];
      if (!gradient) continue;
      if (t < scoresTensor()) {
        const next = layers[t + 1];
        parts.push(h('div', { class: 'bw-link' }, h('span', { class: 'arrow', 'aria-hidden': 'true' }, '↓'),
          `backward through layer ${t + 1} · ${next.label} — click a value below to see how`));
      }
      parts.push(ladderRow(trace, t, gradient, arrays));
    }
    ladder.replaceChildren(...parts);
  }

  function ladderRow(trace, t, gradient, arrays) {
    const layers = model().layers;
    const { classes } = model();
    // the scores' gradient: one cell per class, in a column beside the class names
    const named = t === scoresTensor() && gradient.data.length === classes.length && classes.length <= 32;
    const layout = named ? { channels: 1, rows: classes.length, cols: 1, size: classes.length, vector: true } : mapLayout(gradient.shape);
    const mode = store.get('rangeMode');
    const slot = t < 0 ? arrays.length - 1 : t;
    const clickable = t < scoresTensor();
    const cell = named ? 18 : cellSize(layout);
    const maps = [];
    let rowLimit = 0;
    for (let c = 0; c < layout.channels; c++) {
      const limit = colourLimit(arrays, slot, c, mode) || 1e-12;
      rowLimit = Math.max(rowLimit, limit);
      const canvas = h('canvas', {
        class: 'map',
        'data-grad-layer': t < 0 ? 'input' : t,
        'data-channel': c,
        style: `width:${layout.cols * cell}px;height:${layout.rows * cell}px`,
        title: `channel ${c} · max |dL/d| ${fmt(limit, 3)}`,
      });
      paintValues(canvas, gradient.data.subarray(c * layout.size, (c + 1) * layout.size), layout.rows, layout.cols, limit);
      const cursor = h('span', { class: 'cursor', hidden: true });
      const wrap = h('span', { class: 'gmap' }, canvas, cursor);
      if (clickable) makePickable(canvas, cursor, { t, c, layout });
      // the picture's channels by their names, framed in their colours
      const channel = t < 0 ? inputChannel(layout.channels, c) : null;
      if (channel) {
        canvas.style.borderColor = css(channel.full.map((v) => Math.min(v, 220)));
        canvas.title = `${channel.name} channel (c = ${c}) · max |dL/d| ${fmt(limit, 3)}`;
        canvas.setAttribute('aria-label', `gradient of the input's ${channel.name} channel: arrow keys move, Enter explains`);
      }
      maps.push(channel ? h('figure', { class: `gmap-named channel-${channel.name}` }, wrap,
        h('figcaption', {}, `${channel.name} · c = ${c}`)) : wrap);
    }
    if (named) {
      const names = h('ol', { class: 'bw-score-names', 'aria-hidden': 'true' }, classes.map((name, k) => h('li', {
        style: `height:${cell}px`, title: `${name}: p − y = ${fmt(gradient.data[k])}`,
      }, h('span', {}, name), h('span', { class: 'muted' }, fmt(gradient.data[k], 3)))));
      maps.push(names);
    }
    const name = t < 0 ? 'the input image' : `layer ${t} · ${layers[t].label}`;
    const what = t < 0 ? 'dL/d(input)' : t === scoresTensor() ? 'dL/d(scores) = p − y' : 'dL/d(output)';
    return h('div', { class: 'bw-row', 'data-tensor': t < 0 ? 'input' : t },
      h('div', { class: 'bw-row-label' },
        h('strong', {}, what), h('span', {}, name), h('span', { class: 'muted' }, shapeText(gradient.shape)),
        legend(rowLimit, mode === 'unit' ? 'each map on its own scale, up to' : 'gradient', 2)),
      h('div', { class: named ? 'bw-maps bw-score-strip' : 'bw-maps' }, maps));
  }

  /** Click, or arrow keys + Enter, pick a position of a map; the cursor shows where. */
  function makePickable(canvas, cursor, { t, c, layout }) {
    const at = { row: Math.floor(layout.rows / 2), col: Math.floor(layout.cols / 2) };
    const chosen = selection && selection.tensor === t && selection.channel === c;
    if (chosen) Object.assign(at, { row: selection.row, col: selection.col });
    const place = () => {
      cursor.hidden = false;
      Object.assign(cursor.style, {
        left: `${(100 * at.col) / layout.cols}%`, top: `${(100 * at.row) / layout.rows}%`,
        width: `${100 / layout.cols}%`, height: `${100 / layout.rows}%`,
      });
    };
    const pick = () => {
      const flat = at.row * layout.cols + at.col;
      if (layout.vector && flat >= layout.size) return;
      findAll('.bw-ladder .gmap.selected').forEach((e) => e.classList.remove('selected'));
      canvas.parentElement.classList.add('selected');
      selection = {
        tensor: t, channel: c, row: at.row, col: at.col, layer: t + 1,
        index: layout.vector ? [flat] : [c, at.row, at.col], moveCursor,
      };
      explain();
    };
    Object.assign(canvas, { tabIndex: 0 });
    canvas.setAttribute('role', 'button');
    canvas.setAttribute('aria-label', `gradient map ${t < 0 ? 'of the input image' : `after layer ${t}`}, channel ${c}: arrow keys move, Enter explains`);
    const moveCursor = (row, col) => {
      Object.assign(at, { row, col });
      place();
    };
    if (chosen) {
      canvas.parentElement.classList.add('selected');
      place();
      selection.moveCursor = moveCursor;
    }
    canvas.addEventListener('click', (event) => {
      at.row = Math.min(layout.rows - 1, Math.floor((event.offsetY / canvas.clientHeight) * layout.rows));
      at.col = Math.min(layout.cols - 1, Math.floor((event.offsetX / canvas.clientWidth) * layout.cols));
      place();
      pick();
    });
    canvas.addEventListener('focus', place);
    canvas.addEventListener('blur', () => { if (!canvas.parentElement.classList.contains('selected')) cursor.hidden = true; });
    canvas.addEventListener('keydown', (event) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (moves[event.key]) {
        at.row = Math.max(0, Math.min(layout.rows - 1, at.row + moves[event.key][0]));
        at.col = Math.max(0, Math.min(layout.cols - 1, at.col + moves[event.key][1]));
        place();
      } else if (event.key !== 'Enter' && event.key !== ' ') {
        return;
      } else {
        pick();
      }
      event.preventDefault();
    });
  }

  /** Per gradient map: what the detail remembers across re-renders and re-traces. */
  function memoryOf({ tensor, channel }) {
    const key = `${tensor}:${channel}`;
    if (!memories.has(key)) memories.set(key, {});
    return memories.get(key);
  }

  /** The explanation starts beside the row of the value it explains (no scroll box of its own). */
  function placePane() {
    const row = selection && ladder.querySelector(`.bw-row[data-tensor='${selection.tensor < 0 ? 'input' : selection.tensor}']`);
    const offset = row ? row.getBoundingClientRect().top - ladder.getBoundingClientRect().top : 0;
    pane.style.setProperty('--pane-offset', `${Math.max(0, Math.round(offset))}px`);
  }

  async function explain() {
    const seq = ++explainSeq;
    scan?.destroy();
    scan = null;
    placePane();
    const { layer, index } = selection;
    if (model().layers[layer].operation === 'convolution' && index.length === 3) return slide();
    pane.classList.add('busy');
    const memory = memoryOf(selection);
    try {
      const payload = await api.explain(store.get('image'), layer, index, store.get('target'));
      if (seq !== explainSeq) return;
      pane.replaceChildren(renderDetail(payload, { model: model(), trace: store.get('trace'), layer, store, memory }));
    } catch (error) {
      if (seq !== explainSeq) return;
      pane.replaceChildren(h('p', { class: 'bw-error', role: 'alert' }, `This value could not be explained: ${error.message}`));
    } finally {
      if (seq === explainSeq) pane.classList.remove('busy');
    }
  }

  /**
   * dL/dx of a convolution: the forward view's scanner moves the rotated kernel over δ̃,
   * one input position at a time (play / step / hover), each position explained by the engine.
   */
  function slide() {
    const { layer, channel, tensor } = selection;
    const [, rows, cols] = model().layers[layer].input_shape;
    const memory = memoryOf(selection);
    memory.position = [selection.row, selection.col];
    pane.classList.add('busy');
    const current = scanner({
      store, layer, channel, rows, cols, memory, target: store.get('target'),
      show: (payload, [i, j]) => {
        if (scan !== current || !selection || selection.tensor !== tensor || selection.channel !== channel) return;
        Object.assign(selection, { row: i, col: j, index: [channel, i, j] });
        selection.moveCursor?.(i, j);
        pane.replaceChildren(renderDetail(payload, { model: model(), trace: store.get('trace'), layer, store, memory, scan: current }));
      },
    });
    scan = current;
    current.ready.finally(() => { if (scan === current) pane.classList.remove('busy'); });
  }
}
