// Flatten → dense: how the maps unroll into one vector (channel, then row, then column), and
// how one dense unit adds up its weighted inputs (the largest contributions, then the total).
import { absMax, fmt } from './colors.js';
import { MapView, activations, h, indexed, limitFor, mathml, shapeText, vectorGrid } from './forward-maps.js';
import { explainCached } from './forward-scan.js';

const TOP = 10; // contributions listed one by one
const CONTRIBUTION_MAP_PX = 56;

const isOp = (model, index, operation) => model.layers[index]?.operation === operation;

/** A (C, H, W) shape a vector was flattened from, or null. */
function unflattened(model, layer) {
  const shape = model.layers[layer].input_shape;
  return shape.length === 3 ? shape : null;
}

/** "(c, h, w)" of flat index k in a (C, H, W) shape. */
function source(shape, k) {
  const [, H, W] = shape;
  return [Math.floor(k / (H * W)), Math.floor(k / W) % H, k % W];
}

/** Small maps of `values` laid out as `shape` (C maps), or one strip; fn(k) on hover. */
function vectorMaps(values, shape, limit, size, onIndex) {
  const n = values.length;
  const maps = shape ? Array.from({ length: shape[0] }, () => ({ rows: shape[1], cols: shape[2] })) : [vectorGrid(n, 16)];
  const per = maps[0].rows * maps[0].cols;
  const views = maps.map(({ rows, cols }, c) => {
    const view = new MapView({ rows, cols, size, label: shape ? `channel ${c}` : 'vector' });
    view.paintData(values, c * per, Math.min(per, n - c * per), limit);
    view.onCell(([r, q]) => {
      const k = c * per + r * cols + q;
      if (k < n) {
        mark(k);
        onIndex(k);
      }
    }, () => [0, 0]);
    return view;
  });
  const mark = (k, name = 'current') => views.forEach((view, c) => {
    const local = k - c * per;
    view.mark(name, local >= 0 && local < per ? [{ r: Math.floor(local / view.cols), c: local % view.cols }] : []);
  });
  return { element: h('div', { class: 'vector-maps' }, views.map((v) => v.element)), mark };
}

/** The flatten section: maps → vector, with the index arithmetic for the hovered value. */
function flattenSection({ store, model, trace }, layer, start) {
  const arrays = activations(trace);
  const [x, y] = [arrays[layer], arrays[layer + 1]];
  const shape = unflattened(model, layer);
  const n = y.data.length;
  const readout = h('div', { class: 'flat-readout', 'aria-live': 'polite' });
  const maps = vectorMaps(x.data, shape, limitFor(store, layer, 0), shape ? 40 : 200, (k) => focus(k));
  const strip = shape ? { rows: shape[0], cols: shape[1] * shape[2] } : vectorGrid(n, 16); // a row per channel
  const vector = new MapView({
    ...strip, width: Math.min(760, strip.cols * 6), height: Math.min(260, strip.rows * 8), label: 'the flattened vector',
  });
  vector.paintData(y.data, 0, n, limitFor(store, layer + 1, 0));
  vector.onCell(([r, c]) => focus(r * strip.cols + c), () => [0, 0]);

  function focus(k) {
    if (k < 0 || k >= n) return;
    maps.mark(k);
    vector.mark('current', [{ r: Math.floor(k / strip.cols), c: k % strip.cols }]);
    const value = h('span', { class: 'num result', id: 'flat-value', 'data-index': k, text: fmt(y.data[k]) });
    if (!shape) {
      readout.replaceChildren(mathml(`<mrow>${indexed('y', k)}<mo>=</mo></mrow>`, 'inline'), value);
      return;
    }
    const [, H, W] = shape;
    const [c, r, q] = source(shape, k);
    vector.mark('row', [{ r: Math.floor(k / strip.cols), c: k % strip.cols - q, w: W }]);
    const terms = (...v) => v.map((t) => (typeof t === 'number' ? `<mn>${t}</mn>` : `<mi>${t}</mi>`)).join('');
    readout.replaceChildren(
      mathml(`<mrow><mi>k</mi><mo>=</mo>${terms('c')}<mo>·</mo>${terms('H', 'W')}<mo>+</mo>${terms('h')}<mo>·</mo>${terms('W')}
        <mo>+</mo>${terms('w')}<mo>=</mo>${terms(c)}<mo>·</mo>${terms(H * W)}<mo>+</mo>${terms(r)}<mo>·</mo>${terms(W)}
        <mo>+</mo>${terms(q)}<mo>=</mo>${terms(k)}</mrow>`),
      h('div', {}, mathml(`<mrow>${indexed('y', k)}<mo>=</mo>${indexed('x', c, r, q)}<mo>=</mo></mrow>`, 'inline'), value));
  }
  focus(start);
  const element = h('section', { class: 'view-part flatten-part' },
    h('h3', { text: `Flatten (layer ${layer}) · ${shapeText(x.shape)} → ${n} values` }),
    h('p', {
      class: 'muted fine',
      text: shape ? 'The maps are read channel by channel, each row left to right, and laid end to end: nothing is'
        + ' computed, only rearranged. Each row of the strip is one channel. Hover a value to see where it comes from.'
        : 'The input is laid out as one vector.',
    }),
    h('div', { class: 'flatten-pair' }, maps.element, h('span', { class: 'op big', text: '→' }),
      h('figure', {}, vector.element,
        h('figcaption', { class: 'muted fine', text: shape ? `one row per channel · ${strip.cols} values each` : '' }))),
    readout);
  return { element, focus };
}

/**
 * The dense section: unit `unit` of layer `layer` as a weighted sum, from the engine's payload.
 * `choose(k)` picks another unit; `onInput(n)` follows input n (hovered, or the top one at first).
 */
function denseSection({ store, model, trace }, layer, unit, { choose, onInput }) {
  const info = model.layers[layer];
  const arrays = activations(trace);
  const y = arrays[layer + 1];
  const n = info.input_shape[0];
  const shape = isOp(model, layer - 1, 'flatten') ? unflattened(model, layer - 1) : null;
  const classes = y.data.length === model.classes.length && layer >= model.layers.length - 2 ? model.classes : null;
  const name = (k) => (classes ? `unit ${k} (class “${classes[k]}”)` : `unit ${k}`);

  const units = new MapView({ ...vectorGrid(y.data.length, 16), size: 160, label: 'the layer’s outputs: pick one' });
  const cellOf = (k) => [Math.floor(k / units.cols), k % units.cols];
  let pointed = unit; // hovered, or moved to with the arrow keys; a click or Enter picks it
  units.paintData(y.data, 0, y.data.length, limitFor(store, layer + 1, 0));
  units.onCell(([r, c]) => {
    if (r * units.cols + c >= y.data.length) return;
    pointed = r * units.cols + c;
    units.mark('hover', [{ r, c }]);
  }, () => cellOf(pointed));
  units.element.addEventListener('click', () => choose(pointed));
  units.element.addEventListener('keydown', (event) => event.key === 'Enter' && choose(pointed));
  units.mark('current', [{ r: cellOf(unit)[0], c: cellOf(unit)[1] }]);

  const note = (text) => h('p', { class: 'muted', text });
  const body = h('div', { class: 'dense-body', 'aria-live': 'polite' }, note('Loading the weights…'));
  const ready = explainCached(store, layer, [unit]).then((payload) => body.replaceChildren(...weightedSum(payload)))
    .catch((error) => body.replaceChildren(note(`could not explain ${name(unit)}: ${error.message}`)));

  function weightedSum(payload) {
    const { products } = payload;
    const order = products.map((_, k) => k).sort((a, b) => Math.abs(products[b]) - Math.abs(products[a]));
    const top = order.slice(0, TOP);
    onInput(top[0], { first: true });
    const total = products.reduce((a, b) => a + b, 0);
    const rest = total - top.reduce((a, k) => a + products[k], 0);
    const positive = products.reduce((a, v) => a + Math.max(0, v), 0);
    const from = (k) => (shape ? `(${source(shape, k).join(', ')})` : '');
    const limit = absMax(Float32Array.from(products));
    const contributions = vectorMaps(products, shape, limit, shape ? CONTRIBUTION_MAP_PX : 200, onInput);
    const follow = (k) => {
      contributions.mark(k);
      onInput(k);
    };
    const rows = top.map((k) => h('tr', { 'data-index': k, onpointerenter: () => follow(k) },
      h('td', { text: k }), shape ? h('td', { text: from(k) }) : null,
      h('td', { 'data-role': 'input', text: fmt(payload.inputs[k]) }),
      h('td', { 'data-role': 'weight', text: fmt(payload.weights[k]) }),
      h('td', { 'data-role': 'product', class: products[k] >= 0 ? 'plus' : 'minus', text: fmt(products[k]) })));
    const line = (label, value, attrs = {}) => h('tr', { class: 'sum-line' },
      h('td', { colspan: shape ? 4 : 3, text: label }), h('td', { ...attrs, text: fmt(value) }));
    return [
      h('div', { class: 'dense-layout' },
        h('figure', { class: 'contributions' }, contributions.element,
          h('figcaption', {
            class: 'muted fine',
            text: `every product W[${unit}, n] · x[n]${shape ? `, laid out as the ${shapeText(shape)} maps it came from` : ''}`
              + ': orange adds to the unit, blue takes away',
          })),
        h('table', { class: 'numbers dense-table' },
          h('thead', {}, h('tr', {}, h('th', { text: 'n' }), shape ? h('th', { text: '(c, h, w)' }) : null,
            h('th', { text: 'x[n]' }), h('th', { text: `W[${unit}, n]` }), h('th', { text: 'product' }))),
          h('tbody', {}, rows,
            line(`the other ${n - top.length} products`, rest),
            line(`all ${n} products (positive ${fmt(positive)}, negative ${fmt(total - positive)})`, total,
              { id: 'dense-sum' }),
            line(`+ bias b[${unit}]`, payload.bias, { id: 'dense-bias' }),
            line(`= y[${unit}]`, payload.value, { id: 'dense-value', class: 'result' })))),
    ];
  }

  const element = h('section', { class: 'view-part dense-part', 'data-unit': unit },
    h('h3', { text: `Dense (layer ${layer}) · ${name(unit)}: a weighted sum of all ${n} inputs` }),
    mathml(`<mrow>${indexed('y', 'k')}<mo>=</mo>${indexed('b', 'k')}<mo>+</mo>
      <munderover><mo>∑</mo><mrow><mi>n</mi><mo>=</mo><mn>0</mn></mrow><mn>${n - 1}</mn></munderover>
      ${indexed('W', 'k', 'n')}<mo>·</mo>${indexed('x', 'n')}</mrow>`),
    h('div', { class: 'dense-top' },
      h('figure', { class: 'unit-picker' },
        units.element, h('figcaption', { class: 'muted fine', text: `the ${y.data.length} outputs · click one` })),
      body));
  return { element, ready };
}

/** Flatten and dense together: whichever was selected, with its neighbour when it has one. */
export function vectorView(ctx) {
  const { store, model, trace, layer, channel, memory } = ctx;
  const operation = model.layers[layer].operation;
  const flatten = operation === 'flatten' ? layer : isOp(model, layer - 1, 'flatten') ? layer - 1 : null;
  const dense = operation === 'dense' ? layer : isOp(model, layer + 1, 'dense') ? layer + 1 : null;
  const parts = [];
  let flat = null;
  let ready;
  if (flatten !== null) {
    if (operation === 'flatten') memory.flatIndex ??= channel;
    flat = flattenSection(ctx, flatten, memory.flatIndex ?? 0);
    parts.push(flat.element);
  }
  if (dense !== null) {
    const holder = h('div', {});
    const onInput = (k, { first = false } = {}) => {
      if (first && memory.flatIndex !== undefined) return;
      memory.flatIndex = k;
      if (flat && dense === flatten + 1) flat.focus(k);
    };
    const show = (unit) => {
      if (dense === layer) {
        if (unit !== channel) store.set({ selected: { layer, channel: unit } });
        else place(unit);
        return;
      }
      memory.unit = unit;
      place(unit);
    };
    const place = (unit) => {
      const section = denseSection(ctx, dense, unit, { choose: show, onInput });
      holder.replaceChildren(section.element);
      ready = section.ready;
    };
    const outputs = activations(trace)[dense + 1];
    show(dense === layer ? channel : memory.unit ?? outputs.data.indexOf(Math.max(...outputs.data)));
    parts.push(holder);
  }
  return { element: h('div', { class: 'vector-view' }, parts), ready };
}
