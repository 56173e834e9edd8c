// The overview: every layer's activation maps in one column per layer, the input first and
// the class scores last, coloured by the range mode; hovering a map draws its connections.
import { colourLimit, css, diverging, fmt, legend, paintMap } from './colors.js';
import { MapView, activations, fitOver, h, links, mapsOf, rangeText, shapeText, svg } from './forward-maps.js';
import { byId } from './dom.js';

const COLUMN_HEIGHT = 400; // px available for one column's maps
const COLUMN_WIDTH = 104;
const GAP = 4;
const MAX_SCORES = 12; // more classes than this: the overview lists the most probable ones
/** Operations whose output channel c is computed from input channel c alone. */
const CHANNELWISE = new Set(['relu', 'sigmoid', 'tanh', 'max-pool', 'avg-pool', 'dropout']);

/** Maps per row and the size (px, longer side) that fit `count` maps of rows × cols in a column. */
function mapGrid(count, rows, cols) {
  const longer = Math.max(rows, cols);
  let best = { perRow: 1, size: 0 };
  for (let perRow = 1; perRow <= 8; perRow++) {
    const lines = Math.ceil(count / perRow);
    const width = (COLUMN_WIDTH - (perRow - 1) * GAP) / perRow;
    const height = (COLUMN_HEIGHT - (lines - 1) * GAP) / lines;
    const size = Math.min(72, (width * longer) / cols, (height * longer) / rows);
    if (size > best.size + 0.5) best = { perRow, size };
  }
  return { perRow: best.perRow, size: Math.max(4, Math.floor(best.size)) };
}

/** The names of the input channels, when they have obvious ones. */
const channelNames = (count) => ({ 1: ['grey'], 3: ['red', 'green', 'blue'] })[count] || [];

/** Channel maps as small canvases: the items of a 3-D column. */
function mapItems(shape, layer, label) {
  const { count, rows, cols } = mapsOf(shape);
  const { perRow, size } = mapGrid(count, rows, cols);
  const input = layer === 'input';
  const names = input ? channelNames(count) : [];
  const scale = size / Math.max(rows, cols);
  const items = Array.from({ length: count }, (_, c) => h('canvas', {
    class: 'map ov-item', 'data-layer': layer, 'data-channel': c, tabindex: input ? undefined : 0,
    role: input ? 'img' : 'button',
    'aria-label': `${label}, ${names[c] ? `${names[c]} channel` : `channel ${c}`}`,
    style: `width: ${Math.round(scale * cols)}px; height: ${Math.round(scale * rows)}px`,
  }));
  const grid = h('div', { class: 'ov-maps', style: `grid-template-columns: repeat(${perRow}, auto)` }, items);
  const paint = (array, limits) => items.forEach((canvas, c) => paintMap(canvas, array, c, limits(c)));
  return { items, body: grid, paint };
}

/** A long vector as one strip of cells (rows × cols), e.g. flatten's C rows of H·W values. */
function stripItem(shape, previous, layer, label) {
  const n = shape[0];
  const unrolled = previous.length === 3 && previous[0] * previous[1] * previous[2] === n;
  const { rows, cols } = unrolled ? { rows: previous[0], cols: previous[1] * previous[2] } : mapsOf(shape, 128);
  const view = new MapView({
    rows, cols, className: 'vector ov-item',
    width: unrolled ? COLUMN_WIDTH : Math.min(COLUMN_WIDTH, 22 * cols),
    height: Math.min(COLUMN_HEIGHT, rows * Math.min(12, COLUMN_HEIGHT / rows)),
    label: `${label}: ${n} values${unrolled ? `, one row per channel of ${shapeText(previous)}` : ''}`,
  });
  Object.assign(view.element.dataset, { layer, units: n });
  view.element.setAttribute('role', 'button');
  view.element.tabIndex = 0;
  return {
    items: [view.element], view, body: view.element,
    paint: (array, limits) => view.paintData(array.data, 0, n, limits(0)),
  };
}

/** A short vector with one row per class (the scores before the softmax). */
function classItems(classes, layer, label) {
  const items = classes.map((name, k) => h('div', {
    class: 'unit ov-item', 'data-layer': layer, 'data-channel': k, tabindex: 0, role: 'button',
    'aria-label': `${label}, ${name}`,
  }, h('span', { class: 'swatch' }), h('span', { class: 'unit-name', text: name })));
  return {
    items, body: h('div', { class: 'ov-units' }, items),
    paint: (array, limits) => items.forEach((item, k) => {
      const value = array.data[k];
      item.firstChild.style.background = css(diverging(value, limits(0)));
      item.title = `${classes[k]}: ${fmt(value)}`;
    }),
  };
}

/** Probability bars with class names, the predicted class highlighted (the likeliest few if many). */
function scoreItems(classes, layer) {
  const items = classes.map((name, k) => h('div', {
    class: 'score ov-item', 'data-class': k, 'data-layer': layer, 'data-channel': k, tabindex: 0, role: 'button',
  }, h('span', { class: 'score-name', text: name }), h('span', { class: 'score-bar' }, h('span')),
  h('span', { class: 'score-value' })));
  const paint = ({ probabilities, prediction }) => {
    const cut = [...probabilities].sort((a, b) => b - a)[Math.min(MAX_SCORES, classes.length) - 1];
    items.forEach((row, k) => {
      const percent = `${(100 * probabilities[k]).toFixed(1)} %`;
      row.hidden = probabilities[k] < cut;
      row.classList.toggle('predicted', k === prediction);
      row.children[1].firstChild.style.width = percent.replace(' ', '');
      row.children[2].textContent = percent;
      row.setAttribute('aria-label', `${classes[k]}: probability ${percent}`);
    });
  };
  return { items, body: h('div', { class: 'ov-scores' }, items), scores: true, paint };
}

export function mount(element, store) {
  const model = store.get('model');
  const last = model.layers.length - 1;
  const finalSoftmax = model.layers[last].operation === 'softmax';
  const columns = [];
  const info = new WeakMap(); // item element -> {column, channel}

  /** One column: header, body; `kind` is 'input', 'layer' or 'scores'. */
  const addColumn = (kind, layer, title, shape, items) => {
    const header = h('header', { title: kind === 'layer' ? describeLayer(model.layers[layer]) : '' },
      h('span', { class: 'ov-title', text: title }),
      h('span', { class: 'ov-shape', text: shapeText(shape) }));
    const key = h('div', { class: 'ov-legend' });
    const column = h('div', {
      class: `${kind}-column ov-column`, 'data-layer': layer,
    }, header, h('div', { class: 'ov-body' }, items.body), key);
    const entry = { kind, layer, column, key, ...items, operation: kind === 'layer' ? model.layers[layer].operation : kind };
    columns.push(entry);
    return entry;
  };

  addColumn('input', 'input', 'input', model.input_shape, mapItems(model.input_shape, 'input', 'input image'));
  model.layers.forEach((layer, L) => {
    const shape = layer.output_shape;
    const label = `${layer.label}, layer ${L}`;
    const scores = shape[0] === model.classes.length && L >= last - 1 && shape[0] <= MAX_SCORES; // one per class
    let items;
    if (shape.length >= 3) items = mapItems(shape, L, label);
    else if (L === last && finalSoftmax) items = scoreItems(model.classes, L);
    else if (scores) items = classItems(model.classes, L, label);
    else items = stripItem(shape, layer.input_shape, L, label);
    addColumn('layer', L, layer.label, shape, items);
  });
  if (!finalSoftmax) {
    const L = model.layers.length; // the scores the page computes: "layer" after the last
    addColumn('scores', L, 'class scores', [model.classes.length], scoreItems(model.classes, L));
  }
  columns.forEach((entry, col) => entry.items.forEach((item, channel) => info.set(item, { col, channel })));

  const edges = svg('svg', { class: 'ov-edges', 'aria-hidden': 'true' });
  const quiet = svg('g', { class: 'quiet' });
  const active = svg('g', { class: 'active' });
  edges.append(quiet, active);
  const wrap = h('div', { class: 'ov-wrap' }, edges, columns.map((c) => c.column));
  const readout = h('p', { class: 'ov-readout muted', 'aria-live': 'polite' });
  const viewLegend = h('div', { class: 'ov-view-legend' });
  const shapes = h('input', { type: 'checkbox', id: 'ov-shapes', checked: true });
  element.replaceChildren(
    h('div', { class: 'ov-bar' },
      h('h2', { text: 'Overview' }),
      h('p', {
        class: 'muted',
        text: 'Every layer’s outputs, left to right. Hover a map to see what it is computed from; click it to see how.',
      }),
      h('label', { class: 'toggle' }, shapes, ' shapes'),
      viewLegend),
    wrap, readout);
  shapes.addEventListener('change', () => {
    wrap.classList.toggle('no-shapes', !shapes.checked);
    drawQuietEdges();
  });

  /** The items of the previous column that `item` is computed from. */
  const sources = (col, channel) => {
    const previous = columns[col - 1].items;
    const same = CHANNELWISE.has(columns[col].operation) && previous.length === columns[col].items.length;
    return same ? [previous[channel]] : previous;
  };
  const drawQuietEdges = () => {
    fitOver(edges, wrap);
    const pairs = columns.slice(1).flatMap((entry, i) => entry.scores ? []
      : entry.items.flatMap((item, channel) => sources(i + 1, channel).map((from) => [from, item])));
    quiet.replaceChildren(...links(wrap, pairs));
  };
  new ResizeObserver(drawQuietEdges).observe(wrap); // the layout only changes with the window

  let hovered = null;
  const highlight = (item, text) => {
    for (const old of wrap.querySelectorAll('.linked, .hovered')) old.classList.remove('linked', 'hovered');
    active.replaceChildren();
    hovered = item;
    if (!item) {
      readout.textContent = 'Hover a map for its values; click it for the computation behind it.';
      return;
    }
    const { col, channel } = info.get(item);
    item.classList.add('hovered');
    if (col > 0) {
      const from = sources(col, channel);
      from.forEach((f) => f.classList.add('linked'));
      active.replaceChildren(...links(wrap, from.map((f) => [f, item])));
    }
    readout.textContent = text || describeItem(col, channel);
  };

  const describeItem = (col, channel) => {
    const entry = columns[col];
    const trace = store.get('trace');
    if (entry.scores) return `class “${model.classes[channel]}”: probability ${fmt(trace.probabilities[channel])}`;
    const array = activations(trace)[col];
    const { size, rows, cols, count } = mapsOf(array.shape);
    const name = entry.kind === 'input' ? 'input' : `${model.layers[entry.layer].label} (layer ${entry.layer})`;
    const source = col > 0 ? sources(col, channel).length : 0;
    const what = count > 1 || array.shape.length >= 3 ? `channel ${channel} · ${rows}×${cols}` : `${size} values`;
    return `${name} · ${what} · values ${rangeText(array.data, channel * size, count > 1 ? size : array.data.length)}`
      + (source ? ` · computed from ${source} map${source > 1 ? 's' : ''} of the previous layer` : '');
  };

  /** The unit of a strip under the pointer. */
  const unitAt = (entry, event) => {
    const cell = entry.view.cellAt(event);
    const unit = cell && cell[0] * entry.view.cols + cell[1];
    return cell && unit < Number(entry.view.element.dataset.units) ? unit : null;
  };
  wrap.addEventListener('pointermove', (event) => {
    const item = event.target.closest('.ov-item');
    if (!item) {
      if (hovered) highlight(null);
      return;
    }
    const entry = columns[info.get(item).col];
    if (entry.view) {
      const unit = unitAt(entry, event);
      entry.view.mark('unit', unit === null ? [] : [{ r: Math.floor(unit / entry.view.cols), c: unit % entry.view.cols }]);
      const { col } = info.get(item);
      const value = unit === null ? '' : ` · unit ${unit} = ${fmt(activations(store.get('trace'))[col].data[unit])}`;
      return highlight(item, describeItem(col, 0) + value);
    }
    if (item !== hovered) highlight(item);
  });
  wrap.addEventListener('pointerleave', () => {
    columns.forEach((entry) => entry.view && entry.view.mark('unit', []));
    highlight(null);
  });
  wrap.addEventListener('focusin', (event) => event.target.classList.contains('ov-item') && highlight(event.target));

  const select = (item, event) => {
    const { col, channel } = info.get(item);
    const entry = columns[col];
    if (entry.kind === 'input') return;
    const unit = entry.view ? (event && event.clientX ? unitAt(entry, event) : 0) : channel;
    if (unit === null) return;
    store.set({ selected: { layer: entry.layer, channel: unit } });
    requestAnimationFrame(() => byId('detail').scrollIntoView({ behavior: 'smooth', block: 'start' }));
  };
  wrap.addEventListener('click', (event) => {
    const item = event.target.closest('.ov-item');
    if (item) select(item, event);
  });
  wrap.addEventListener('keydown', (event) => {
    if ((event.key === 'Enter' || event.key === ' ') && event.target.classList.contains('ov-item')) {
      event.preventDefault();
      select(event.target, null);
    }
  });

  const paint = () => {
    const trace = store.get('trace');
    if (!trace) return;
    const arrays = activations(trace);
    const mode = store.get('rangeMode');
    const global = colourLimit(arrays, 0, 0, 'global');
    columns.forEach((entry, col) => {
      if (entry.scores) {
        entry.paint(trace);
        return;
      }
      const layer = colourLimit(arrays, col, 0, 'layer'); // once per column, not once per map
      const limits = { unit: (c) => colourLimit(arrays, col, c, 'unit'), layer: () => layer, global: () => global }[mode];
      entry.paint(arrays[col], limits);
      entry.key.replaceChildren(mode === 'layer' ? legend(layer, '') : '');
    });
    const scale = mode === 'unit' ? 'each map on its own scale' : 'each layer on its own scale';
    viewLegend.replaceChildren(mode === 'global' ? legend(global, 'whole network')
      : h('span', { class: 'muted', text: `colours: ${scale}` }));
    if (hovered && !hovered.isConnected) highlight(null);
  };

  const markSelected = (selected) => {
    for (const old of wrap.querySelectorAll('.selected')) old.classList.remove('selected');
    if (!selected) return;
    const entry = columns.find((c) => c.layer === selected.layer);
    const item = entry && (entry.view ? entry.items[0] : entry.items[selected.channel]);
    if (item) item.classList.add('selected');
  };

  store.subscribe('trace', paint);
  store.subscribe('rangeMode', paint);
  store.subscribe('selected', markSelected);
  highlight(null);
}

/** A layer's settings for a tooltip: operation, shapes, parameters. */
function describeLayer(layer) {
  const settings = Object.entries(layer.config).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n');
  return `${layer.label}\n${shapeText(layer.input_shape)} → ${shapeText(layer.output_shape)}`
    + `\n${layer.parameters.toLocaleString('en')} parameters${settings ? `\n${settings}` : ''}`;
}
