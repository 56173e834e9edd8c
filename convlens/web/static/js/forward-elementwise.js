// Element-wise layers (ReLU, sigmoid, tanh, dropout at evaluation) and the fallback for any
// other operation: the map before and after, side by side; hover a value to follow it through.
import { absMax, fmt } from './colors.js';
import { MapView, activations, brightest, h, indexed, limitFor, mapsOf, mathml, mn, svg } from './forward-maps.js';

const paren = (m) => `<mo>(</mo>${m}<mo>)</mo>`;

/** Each function: its MathML applied to an argument, the function itself, and a sentence. */
const FUNCTIONS = {
  relu: {
    math: (x) => `<mi>max</mi>${paren(`<mn>0</mn><mo>,</mo>${x}`)}`,
    f: (x) => Math.max(0, x),
    note: 'ReLU keeps positive values and sets negative ones to 0: the network can switch a feature off, and'
      + ' stacked layers stop being one big linear function.',
  },
  sigmoid: {
    math: (x) => `<mfrac><mn>1</mn><mrow><mn>1</mn><mo>+</mo><msup><mi>e</mi><mrow><mo>−</mo>${paren(x)}</mrow></msup>
      </mrow></mfrac>`,
    f: (x) => 1 / (1 + Math.exp(-x)),
    note: 'The sigmoid squashes any value into (0, 1); large |x| saturate, which slows learning.',
  },
  tanh: {
    math: (x) => `<mi>tanh</mi>${paren(x)}`,
    f: Math.tanh,
    note: 'tanh squashes any value into (−1, 1), centred on 0.',
  },
  dropout: {
    math: (x) => x,
    f: (x) => x,
    note: 'At evaluation dropout passes every value through unchanged. In training it zeroes a random fraction p'
      + ' of them and scales the rest by 1/(1 − p).',
  },
};

/** A small plot of f over [−limit, limit] with the current point; returns {element, move(x)}. */
function functionPlot(f, limit) {
  const [width, height, margin] = [220, 140, 12];
  const samples = Array.from({ length: 81 }, (_, k) => -limit + (2 * limit * k) / 80);
  const values = samples.map(f);
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const px = (x) => margin + ((x + limit) / (2 * limit)) * (width - 2 * margin);
  const py = (y) => height - margin - ((y - lo) / (hi - lo || 1)) * (height - 2 * margin);
  const guide = svg('path', { class: 'guide' });
  const dot = svg('circle', { r: 4.5, class: 'dot' });
  const element = svg('svg', { class: 'fn-plot', viewBox: `0 0 ${width} ${height}`, width, height, 'aria-hidden': 'true' });
  element.append(
    svg('line', { x1: margin, x2: width - margin, y1: py(0), y2: py(0), class: 'axis' }),
    svg('line', { x1: px(0), x2: px(0), y1: margin, y2: height - margin, class: 'axis' }),
    svg('path', { d: samples.map((x, k) => `${k ? 'L' : 'M'}${px(x)},${py(values[k])}`).join(''), class: 'curve' }),
    guide, dot);
  const move = (x) => {
    const cx = px(Math.max(-limit, Math.min(limit, x)));
    const cy = py(f(Math.max(-limit, Math.min(limit, x))));
    dot.setAttribute('cx', cx);
    dot.setAttribute('cy', cy);
    guide.setAttribute('d', `M${cx},${py(0)}V${cy}H${px(0)}`);
  };
  return { element, move };
}

/** Where the selected channel (or unit) lives in an array: its map grid and offset. */
function place(array, channel) {
  const grid = mapsOf(array.shape, 16);
  return { ...grid, offset: array.shape.length >= 3 ? channel * grid.size : 0 };
}

export function elementwise({ store, model, trace, layer, channel, memory }) {
  const info = model.layers[layer];
  const fn = FUNCTIONS[info.operation];
  const arrays = activations(trace);
  const [x, y] = [arrays[layer], arrays[layer + 1]];
  const spatial = y.shape.length >= 3;
  const at = place(y, channel);
  const paired = x.data.length === y.data.length; // same shape: value k in, value k out
  if (!memory.position) {
    memory.position = spatial ? brightest(paired ? x : y, channel) : [Math.floor(channel / at.cols), channel % at.cols];
  }
  const view = (array, index, what) => {
    const grid = new MapView({ rows: at.rows, cols: at.cols, size: 240, label: `${what}: hover a value` });
    grid.paintData(array.data, at.offset, at.size, limitFor(store, index, spatial ? channel : 0));
    return grid.onCell((cell) => update(cell), () => memory.position);
  };
  const views = [paired ? view(x, layer, 'input') : null, view(y, layer + 1, 'output')].filter(Boolean);
  const plot = fn && functionPlot(fn.f, absMax(x.data, at.offset, at.size) || 1);
  const readout = h('div', { class: 'act-readout', 'aria-live': 'polite' });

  function update([r, c]) {
    const k = r * at.cols + c;
    if (k >= at.size) return;
    memory.position = [r, c];
    views.forEach((v) => v.mark('current', [{ r, c }]));
    const index = spatial ? [channel, r, c] : [k];
    readout.dataset.position = index.join(',');
    const line = (name, middle, value, attrs) => h('div', {},
      mathml(`<mrow>${indexed(name, ...index)}<mo>=</mo>${middle}</mrow>`, 'inline'), h('span', { ...attrs, text: fmt(value) }));
    const output = { class: 'num result', id: 'act-output' };
    const yv = y.data[at.offset + k];
    if (!paired) {
      readout.replaceChildren(line('y', '', yv, output));
      return;
    }
    const xv = x.data[at.offset + k];
    plot?.move(xv);
    readout.replaceChildren(
      line('x', '', xv, { class: 'num', id: 'act-input' }),
      line('y', fn ? `${fn.math(mn(xv))}<mo>=</mo>` : '', yv, output));
  }

  const caption = (text, shape) => h('figcaption', {}, h('b', { text }), ` · ${shape}`);
  const shapeOf = spatial ? `${at.rows}×${at.cols}` : `${at.size} values`;
  const middle = h('div', { class: 'fn-card' },
    fn ? mathml(`<mrow><mi>y</mi><mo>=</mo>${fn.math('<mi>x</mi>')}</mrow>`)
      : h('p', { class: 'muted', text: `No dedicated view for “${info.operation}”: the values before and after it.` }),
    plot?.element, readout);
  const figures = [
    paired ? h('figure', {}, views[0].element, caption(spatial ? `input channel ${channel}` : 'input', shapeOf)) : null,
    middle,
    h('figure', {}, views.at(-1).element, caption(spatial ? `output channel ${channel}` : 'output', shapeOf)),
  ];
  update(memory.position);
  return {
    element: h('div', { class: 'elementwise-view' },
      fn ? h('p', { class: 'muted fine', text: fn.note }) : null,
      h('div', { class: 'side-by-side' }, figures)),
  };
}
