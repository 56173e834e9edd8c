// The overview: every layer's activation maps in one column per layer, the input first (in
// the picture's own colours) and the class probabilities last, coloured by the range mode;
// hovering a map draws its connections.
//
// The columns are fitted to the width the page has (layout()): each gets the room its title
// needs, the maps share the rest, and a column whose maps would be smaller than MIN_MAP px
// shows as many as fit with "+N more" to see the others. Where even that is too wide (a
// narrow screen, a very deep model) the columns scroll sideways under the class scores, which
// stay in view. Keyboard: one tab stop per layer; arrows move between maps (↑ ↓) and layers
// (← →), Enter opens the detail and moves focus there (Escape there comes back).
import { colourLimit, css, diverging, fmt, inputChannel, legend, paintMap } from './colors.js';
import { MapView, activations, channelName, h, inputScale, mapsOf, rangeText, shapeText, svg } from './forward-maps.js';
import { byId } from './dom.js';
import { timed } from './state.js';

const MIN_MAP = 14; // px on a map's longer side: smaller ones hide behind "+N more"
const MAX_MAP = 96;
const GAP = 4; // px between maps
const COLUMN_GAP = 8; // px at least between columns (CSS .ov-wrap column-gap)
const STRIP_WIDTH = 44; // px of a vector drawn as a strip
const MORE_HEIGHT = 30; // px of the "+N more" button under a column's maps
const MAX_SCORES = 12; // more classes than this: the overview lists the most probable ones
/** Operations whose output channel c is computed from input channel c alone. */
const CHANNELWISE = new Set(['relu', 'sigmoid', 'tanh', 'max-pool', 'avg-pool', 'dropout']);
const BUNDLE = 120; // more all-to-all edges than this between two columns: drawn through one point

/** The height the columns' maps may take: what the window leaves, within bounds. */
const bodyHeight = () => Math.round(Math.max(200, Math.min(440, window.innerHeight - 330)));

/** A short column title (two lines at most, no token cut): the operation and its window. */
export function shortTitle(layer) {
  const pair = (p) => (Array.isArray(p) ? p.join('×') : String(p));
  const { config = {}, operation } = layer;
  const names = {
    convolution: 'conv', 'max-pool': 'max pool', 'avg-pool': 'avg pool', relu: 'ReLU', sigmoid: 'sigmoid',
    tanh: 'tanh', softmax: 'softmax', flatten: 'flatten', dense: 'dense', dropout: 'dropout',
  };
  const name = names[operation] || layer.label.split('(')[0];
  return config.kernel_size ? `${name} ${pair(config.kernel_size)}` : name;
}

/** A shape as text that may wrap after each ×, never inside a number. */
const shapeWords = (shape) => shape.flatMap((n, k) => (k ? ['×', h('wbr'), String(n)] : [String(n)]));

/** Channel maps as small canvases: the items of a 3-D column (the input's in its own colours). */
function mapItems(shape, layer, label, relayout) {
  const { count, rows, cols } = mapsOf(shape);
  const input = layer === 'input';
  const items = Array.from({ length: count }, (_, c) => h('canvas', {
    class: 'map ov-item', 'data-layer': layer, 'data-channel': c, width: cols, height: rows,
    tabindex: input ? undefined : -1, role: input ? 'img' : 'button',
    'aria-label': `${label}, ${channelName(count, c, input)}`,
  }));
  const grid = h('div', { class: 'ov-maps' }, items);
  let expanded = false;
  const more = h('button', {
    type: 'button', class: 'ov-more', hidden: true, tabindex: -1,
    onclick: () => {
      expanded = !expanded;
      relayout(more);
    },
  });
  const longer = Math.max(rows, cols);
  const box = (size) => [Math.max(1, Math.round((size * cols) / longer)), Math.max(1, Math.round((size * rows) / longer))];

  /** The largest map size (and maps per row) that puts `k` maps into width × height. */
  const fit = (k, width, height) => {
    let best = { perRow: 1, size: 0 };
    for (let perRow = 1; perRow <= Math.min(k, 16); perRow++) {
      const lines = Math.ceil(k / perRow);
      const across = ((width - (perRow - 1) * GAP) / perRow) * (longer / cols);
      const down = ((height - (lines - 1) * GAP) / lines) * (longer / rows);
      const size = Math.min(MAX_MAP, Math.max(24, 8 * longer), across, down);
      if (size > best.size + 0.5) best = { perRow, size };
    }
    return { perRow: best.perRow, size: Math.floor(best.size) };
  };

  /** Size the maps for a column `width` wide and `height` high; returns the room they take. */
  const layout = (width, height) => {
    let shown = count;
    let g = fit(count, width, height);
    const [minW, minH] = box(MIN_MAP);
    if (expanded) { // every map, at least MIN_MAP: as few per row as the height allows
      const room = height - MORE_HEIGHT;
      for (let perRow = 1; perRow <= count; perRow++) {
        const lines = Math.ceil(count / perRow);
        const down = ((room - (lines - 1) * GAP) / lines) * (longer / rows);
        if (down >= MIN_MAP || perRow === count) {
          g = { perRow, size: Math.floor(Math.min(MAX_MAP, Math.max(24, 8 * longer), Math.max(MIN_MAP, down))) };
          break;
        }
      }
    } else if (g.size < MIN_MAP) { // as many as fit at MIN_MAP, the rest behind "+N more"
      const perRow = Math.max(1, Math.floor((width + GAP) / (minW + GAP)));
      const lines = Math.max(1, Math.floor((height - MORE_HEIGHT + GAP) / (minH + GAP)));
      shown = Math.min(count, perRow * lines);
      g = fit(shown, width, height - MORE_HEIGHT);
      g.size = Math.max(MIN_MAP, g.size);
    }
    const [w, ht] = box(g.size);
    items.forEach((canvas, c) => {
      canvas.hidden = c >= shown;
      canvas.style.width = `${w}px`;
      canvas.style.height = `${ht}px`;
    });
    const perRow = Math.min(g.perRow, shown);
    grid.style.gridTemplateColumns = `repeat(${perRow}, ${w}px)`;
    more.hidden = shown === count && !expanded;
    more.textContent = expanded ? 'show fewer' : `+${count - shown} more`;
    more.setAttribute('aria-label', expanded ? `${label}: show fewer maps`
      : `${label}: show the other ${count - shown} maps`);
    const lines = Math.ceil(shown / perRow);
    return {
      width: perRow * w + (perRow - 1) * GAP,
      height: lines * ht + (lines - 1) * GAP + (more.hidden ? 0 : MORE_HEIGHT),
    };
  };
  return { items, body: h('div', { class: 'ov-maps-wrap' }, grid, more), layout, more, type: 'maps', named: input && Boolean(inputChannel(count, 0)) };
}

/** A long vector as one strip of cells (rows × cols), e.g. flatten's C rows of H·W values. */
function stripItem(shape, previous, layer, label) {
  const n = shape[0];
  const unrolled = previous.length === 3 && previous[0] * previous[1] * previous[2] === n;
  const { rows, cols } = unrolled ? { rows: previous[0], cols: previous[1] * previous[2] } : mapsOf(shape, 128);
  const view = new MapView({
    rows, cols, className: 'vector ov-item', width: 1, height: 1,
    label: `${label}: ${n} values${unrolled ? `, one row per channel of ${shapeText(previous)}` : ''}`,
  });
  Object.assign(view.element.dataset, { layer, units: n });
  view.element.setAttribute('role', 'button');
  view.element.tabIndex = -1;
  const layout = (width, height) => {
    const w = unrolled ? STRIP_WIDTH : Math.min(STRIP_WIDTH, 22 * cols);
    const ht = Math.round(Math.min(height, rows * Math.min(12, height / rows)));
    Object.assign(view.element.style, { width: `${w}px`, height: `${ht}px` });
    return { width: w, height: ht };
  };
  return {
    items: [view.element], view, body: view.element, layout, type: 'strip',
    paint: (array, limits) => view.paintData(array.data, 0, n, limits(0)),
  };
}

/** A short vector with one row per class (the scores before the softmax); `compact`: swatches only. */
function classItems(classes, layer, label, compact) {
  const items = classes.map((name, k) => h('div', {
    class: 'unit ov-item', 'data-layer': layer, 'data-channel': k, tabindex: -1, role: 'button',
    'aria-label': `${label}, ${name}`,
  }, h('span', { class: 'swatch' }), compact ? null : h('span', { class: 'unit-name', text: name })));
  return {
    items, body: h('div', { class: `ov-units${compact ? ' compact' : ''}` }, items), type: 'units',
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
    class: 'score ov-item', 'data-class': k, 'data-layer': layer, 'data-channel': k, tabindex: -1, role: 'button',
  }, h('span', { class: 'score-name', text: name, title: name }), h('span', { class: 'score-bar' }, h('span')),
  h('span', { class: 'score-value' })));
  const paint = ({ probabilities, prediction }) => {
    const cut = [...probabilities].sort((a, b) => b - a)[Math.min(MAX_SCORES, classes.length) - 1];
    items.forEach((row, k) => {
      const percent = `${(100 * probabilities[k]).toFixed(1)} %`;
      row.hidden = probabilities[k] < cut;
      row.classList.toggle('predicted', k === prediction);
      row.children[1].firstChild.style.width = percent.replace(' ', '');
      row.children[2].textContent = percent;
      row.title = `${classes[k]}: probability ${percent}`; // its name is its text: the class and the percentage
    });
  };
  return { items, body: h('div', { class: 'ov-scores' }, items), scores: true, paint, type: 'scores' };
}

export function mount(element, store) {
  const model = store.get('model');
  const last = model.layers.length - 1;
  const finalSoftmax = model.layers[last].operation === 'softmax';
  const columns = [];
  const info = new WeakMap(); // item element -> {col, channel}

  /** One column: header, body, legend; `kind` is 'input', 'layer' or 'scores'. */
  const addColumn = (kind, layer, title, shape, items, full) => {
    const header = h('header', { title: kind === 'layer' ? describeLayer(model.layers[layer]) : '' },
      h('span', { class: 'ov-title', text: title }),
      h('span', { class: 'ov-shape' }, shapeWords(shape)));
    const key = h('div', { class: 'ov-legend' });
    const column = h('div', {
      class: `${kind}-column ov-column ov-kind-${items.type}`, 'data-layer': layer, role: 'group', 'aria-label': full,
    }, header, h('div', { class: 'ov-body' }, items.body), key);
    const entry = { kind, layer, column, header, key, ...items, operation: kind === 'layer' ? model.layers[layer].operation : kind };
    columns.push(entry);
    return entry;
  };

  const relayout = (focus) => {
    layout(true);
    if (focus && !focus.hidden) focus.focus();
  };
  addColumn('input', 'input', 'input', model.input_shape, mapItems(model.input_shape, 'input', 'input image', relayout), 'input image');
  model.layers.forEach((layer, L) => {
    const shape = layer.output_shape;
    const label = `${layer.label}, layer ${L}`;
    const scores = shape[0] === model.classes.length && L >= last - 1 && shape[0] <= MAX_SCORES; // one per class
    let items;
    if (shape.length >= 3) items = mapItems(shape, L, label, relayout);
    else if (L === last && finalSoftmax) items = scoreItems(model.classes, L);
    else if (scores) items = classItems(model.classes, L, label, L < last || !finalSoftmax);
    else items = stripItem(shape, layer.input_shape, L, label);
    addColumn('layer', L, shortTitle(layer), shape, items, `layer ${L}: ${layer.label}, output ${shapeText(shape)}`);
  });
  if (!finalSoftmax) {
    const L = model.layers.length; // the scores the page computes: "layer" after the last
    addColumn('scores', L, 'class scores', [model.classes.length], scoreItems(model.classes, L),
      'class scores: the softmax of the last layer');
  }
  columns.forEach((entry, col) => entry.items.forEach((item, channel) => info.set(item, { col, channel })));

  // the many quiet edges are one canvas (hundreds of SVG paths made every click's frame
  // slower to composite); the few of the hovered map are SVG above it
  const quiet = h('canvas', { class: 'ov-edges quiet', 'aria-hidden': 'true' });
  const edges = svg('svg', { class: 'ov-edges', 'aria-hidden': 'true' });
  const active = svg('g', { class: 'active' });
  edges.append(active);
  const wrap = h('div', { class: 'ov-wrap' }, quiet, edges, columns.map((c) => c.column));
  const scroller = h('div', { class: 'ov-scroll' }, wrap);
  const readout = h('p', { class: 'ov-readout muted', 'aria-live': 'polite' });
  const hint = h('p', { class: 'ov-hint muted', hidden: true });
  const viewLegend = h('div', { class: 'ov-view-legend' });
  const shapes = h('input', { type: 'checkbox', id: 'ov-shapes', checked: true });
  element.replaceChildren(
    h('div', { class: 'ov-bar' },
      h('h2', { text: 'Overview', id: 'overview-title' }),
      h('p', {
        class: 'muted',
        text: 'Every layer’s outputs, left to right. Hover a map to see what it is computed from; click it to see how.'
          + ' Keyboard: Tab to a layer, arrows to move, Enter to open.',
      }),
      h('label', { class: 'toggle' }, shapes, ' shapes'),
      viewLegend),
    scroller, hint, readout);
  shapes.addEventListener('change', () => {
    wrap.classList.toggle('no-shapes', !shapes.checked);
    drawQuietEdges();
  });

  // -- fitting the columns to the width ------------------------------------------------------
  let measured = false;
  let fitted = '';
  /** Each column's narrowest width: its title's longest word; the scores' and units' own width. */
  const measure = () => {
    wrap.classList.add('measuring');
    for (const entry of columns) {
      entry.minWidth = Math.ceil(entry.header.getBoundingClientRect().width);
      if (entry.type === 'scores' || entry.type === 'units') {
        entry.natural = Math.ceil(entry.column.getBoundingClientRect().width) + 8; // room for the bold predicted class
      }
    }
    wrap.classList.add('wide-titles'); // and the width at which the title needs no second line
    for (const entry of columns) entry.titleWidth = Math.ceil(entry.header.getBoundingClientRect().width);
    wrap.classList.remove('measuring', 'wide-titles');
    measured = columns.every((entry) => entry.minWidth > 0);
  };

  /** Fit every column into the scroller's width (again when `force`, e.g. "+N more"). */
  function layout(force = false) {
    const room = scroller.clientWidth;
    if (!room) return;
    const height = bodyHeight();
    const key = `${room}×${height}`;
    if (key === fitted && !force) return;
    fitted = key;
    if (!measured) measure();
    const widths = new Map();
    let left = room - COLUMN_GAP * (columns.length - 1);
    const flexible = [];
    for (const entry of columns) {
      if (entry.type === 'maps') {
        flexible.push(entry);
        continue;
      }
      const size = entry.layout ? entry.layout(STRIP_WIDTH, height).width : entry.natural;
      widths.set(entry, Math.max(entry.minWidth, size));
      left -= widths.get(entry);
    }
    // the maps' columns share what is left; a title wider than the share keeps its width
    let open = flexible;
    let share = left / Math.max(1, open.length);
    for (;;) {
      const wide = open.filter((entry) => entry.minWidth > share);
      if (!wide.length) break;
      left -= wide.reduce((sum, entry) => sum + entry.minWidth, 0);
      wide.forEach((entry) => widths.set(entry, entry.minWidth));
      open = open.filter((entry) => !wide.includes(entry));
      share = left / Math.max(1, open.length);
    }
    let tallest = 0;
    for (const entry of flexible) {
      const width = widths.get(entry) ?? Math.max(entry.minWidth, Math.floor(share));
      const used = entry.layout(Math.max(width, MIN_MAP), height);
      // narrower maps leave room: the title takes it to stay on one line, where it can
      widths.set(entry, Math.max(entry.minWidth, used.width, Math.min(width, entry.titleWidth)));
      tallest = Math.max(tallest, used.height);
    }
    for (const entry of columns) if (entry.type !== 'maps') tallest = Math.max(tallest, entry.body.offsetHeight || 0);
    wrap.style.gridTemplateColumns = columns.map((entry) => `${widths.get(entry)}px`).join(' ');
    wrap.style.setProperty('--ov-body', `${Math.min(height, Math.max(120, tallest))}px`);
    const overflow = wrap.scrollWidth > scroller.clientWidth + 1;
    scroller.classList.toggle('overflowing', overflow);
    hint.hidden = !overflow;
    hint.textContent = overflow
      ? 'The network is wider than this window: scroll sideways (or use the arrow keys); the class scores stay in view.'
      : '';
    columns.forEach((entry) => roving(entry));
    paintVisible();
    drawQuietEdges();
  }
  new ResizeObserver(() => layout()).observe(scroller);
  window.addEventListener('resize', () => layout());

  // -- edges ------------------------------------------------------------------------------------
  /** The items of the previous column that `item` is computed from (the shown ones). */
  const sources = (col, channel) => {
    const previous = columns[col - 1].items.filter((item) => !item.hidden);
    const same = CHANNELWISE.has(columns[col].operation) && columns[col - 1].items.length === columns[col].items.length;
    return same ? [columns[col - 1].items[channel]].filter((item) => !item.hidden) : previous;
  };
  /** [x1, y1, x2, y2] from the right of `from` to the left of `to`, in the wrap's coordinates (rects read once). */
  const ends = (pairs) => {
    const base = wrap.getBoundingClientRect();
    const rects = new Map();
    const rect = (e) => {
      if (!rects.has(e)) {
        const box = e.getBoundingClientRect();
        rects.set(e, { left: box.left - base.left, right: box.right - base.left, mid: (box.top + box.bottom) / 2 - base.top });
      }
      return rects.get(e);
    };
    return pairs.map(([a, b]) => [
      ...(Array.isArray(a) ? a : [rect(a).right, rect(a).mid]), ...(Array.isArray(b) ? b : [rect(b).left, rect(b).mid]),
    ]);
  };
  /** SVG curves between element pairs. */
  const curves = (pairs) => ends(pairs).map(([x1, y1, x2, y2]) => svg('path', {
    d: `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`,
  }));
  function drawQuietEdges() {
    const [width, height] = [wrap.scrollWidth, wrap.scrollHeight];
    edges.setAttribute('width', width);
    edges.setAttribute('height', height);
    const base = wrap.getBoundingClientRect();
    const pairs = [];
    columns.forEach((entry, col) => {
      if (col === 0 || entry.scores) return;
      const shown = entry.items.filter((item) => !item.hidden);
      const all = shown.flatMap((item) => sources(col, info.get(item).channel).map((from) => [from, item]));
      if (all.length <= BUNDLE) {
        pairs.push(...all);
        return;
      }
      // all to all: every source to one point between the columns, and on to every target
      const a = columns[col - 1].column.getBoundingClientRect();
      const b = entry.column.getBoundingClientRect();
      const body = entry.column.querySelector('.ov-body').getBoundingClientRect();
      const hub = [(a.right + b.left) / 2 - base.left, (body.top + body.bottom) / 2 - base.top];
      const from = new Set(all.map(([f]) => f));
      pairs.push(...[...from].map((f) => [f, hub]), ...shown.map((t) => [hub, t]));
    });
    const scale = window.devicePixelRatio || 1;
    Object.assign(quiet, { width: Math.round(width * scale), height: Math.round(height * scale) });
    Object.assign(quiet.style, { width: `${width}px`, height: `${height}px` });
    const context = quiet.getContext('2d');
    context.setTransform(scale, 0, 0, scale, 0, 0);
    context.clearRect(0, 0, width, height);
    context.beginPath();
    for (const [x1, y1, x2, y2] of ends(pairs)) {
      context.moveTo(x1, y1);
      context.bezierCurveTo((x1 + x2) / 2, y1, (x1 + x2) / 2, y2, x2, y2);
    }
    Object.assign(context, { strokeStyle: 'rgba(197, 204, 214, .45)', lineWidth: 0.7 });
    context.stroke();
  }

  // -- hover, focus, keyboard ------------------------------------------------------------------
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
      active.replaceChildren(...curves(from.map((f) => [f, item])));
    }
    readout.textContent = text || describeItem(col, channel);
  };

  const describeItem = (col, channel) => {
    const entry = columns[col];
    const trace = store.get('trace');
    if (!trace) return '';
    if (entry.scores) return `class “${model.classes[channel]}”: probability ${fmt(trace.probabilities[channel])}`;
    const arrays = activations(trace);
    const array = arrays[col];
    const { size, rows, cols, count } = mapsOf(array.shape);
    const name = entry.kind === 'input' ? 'input' : `${model.layers[entry.layer].label} (layer ${entry.layer})`;
    const source = col > 0 ? sources(col, channel).length : 0;
    const which = channelName(count, channel, entry.kind === 'input');
    const what = count > 1 || array.shape.length >= 3 ? `${which} · ${rows}×${cols}` : `${size} values`;
    const scale = store.get('rangeMode') === 'unit' && entry.kind !== 'input' && array.shape.length >= 3
      ? ` · colours: this map’s own scale, ±${fmt(colourLimit(arrays, col, channel, 'unit'), 3)}` : '';
    return `${name} · ${what} · values ${rangeText(array.data, channel * size, count > 1 ? size : array.data.length)}${scale}`
      + (source ? ` · computed from ${source} map${source > 1 ? 's' : ''} of the previous layer` : '');
  };

  /** The unit of a strip under the pointer. */
  const unitAt = (entry, event) => {
    const cell = entry.view.cellAt(event);
    const unit = cell && cell[0] * entry.view.cols + cell[1];
    return cell && unit < Number(entry.view.element.dataset.units) ? unit : null;
  };
  /** Mark unit `unit` of a strip and say its value. */
  const showUnit = (entry, unit) => {
    const { view } = entry;
    view.mark('unit', unit === null ? [] : [{ r: Math.floor(unit / view.cols), c: unit % view.cols }]);
    const col = columns.indexOf(entry);
    const value = unit === null ? '' : ` · unit ${unit} = ${fmt(activations(store.get('trace'))[col].data[unit])}`;
    highlight(view.element, describeItem(col, 0) + value);
  };
  wrap.addEventListener('pointermove', (event) => {
    const item = event.target.closest('.ov-item');
    if (!item) {
      if (hovered) highlight(null);
      return;
    }
    const entry = columns[info.get(item).col];
    if (entry.view) return showUnit(entry, unitAt(entry, event));
    if (item !== hovered) highlight(item);
  });
  wrap.addEventListener('pointerleave', () => {
    columns.forEach((entry) => entry.view && entry.view.mark('unit', []));
    highlight(null);
  });
  wrap.addEventListener('focusin', (event) => {
    const item = event.target.closest('.ov-item');
    if (!item) return;
    const entry = columns[info.get(item).col];
    entry.current = item;
    roving(entry);
    if (!item.matches(':focus-visible')) return; // a click: the pointer already shows it
    if (entry.view) showUnit(entry, entry.unit ?? 0);
    else highlight(item);
  });

  /** The column's keyboard stops: its shown items, then its "+N more" button. */
  const stops = (entry) => [...entry.items.filter((item) => !item.hidden), entry.more && !entry.more.hidden ? entry.more : null]
    .filter(Boolean);
  /** One tab stop per layer: its current item (the first, until another gets focus). */
  function roving(entry) {
    if (entry.kind === 'input') return;
    const list = stops(entry);
    if (!list.includes(entry.current)) entry.current = list[0];
    for (const item of [...entry.items, entry.more].filter(Boolean)) item.tabIndex = item === entry.current ? 0 : -1;
  }
  const keyed = columns.filter((entry) => entry.kind !== 'input');
  wrap.addEventListener('keydown', (event) => {
    const target = event.target;
    const entry = keyed.find((e) => e.items.includes(target) || e.more === target);
    if (!entry) return;
    const list = stops(entry);
    const at = list.indexOf(target);
    const step = { ArrowUp: -1, ArrowDown: 1 }[event.key];
    const across = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (step && entry.view) { // inside a strip: unit by unit
      entry.unit = Math.max(0, Math.min(Number(entry.view.element.dataset.units) - 1, (entry.unit ?? 0) + step));
      showUnit(entry, entry.unit);
    } else if (step || event.key === 'Home' || event.key === 'End') {
      const next = event.key === 'Home' ? 0 : event.key === 'End' ? list.length - 1 : Math.max(0, Math.min(list.length - 1, at + step));
      move(entry, list[next]);
    } else if (across) {
      const other = keyed[keyed.indexOf(entry) + across];
      if (!other) return;
      const there = stops(other);
      const fraction = list.length > 1 ? at / (list.length - 1) : 0;
      move(other, there[Math.round(fraction * (there.length - 1))]);
    } else if ((event.key === 'Enter' || event.key === ' ') && target !== entry.more) {
      select(target, null, true);
    } else {
      return;
    }
    event.preventDefault();
  });
  const move = (entry, item) => {
    entry.current = item;
    roving(entry);
    item.focus();
    item.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  };
  byId('skip-link')?.addEventListener('click', (event) => {
    event.preventDefault();
    const first = keyed[0];
    roving(first);
    element.scrollIntoView({ block: 'start' });
    first.current.focus({ preventScroll: true });
  });

  const select = (item, event, keyboard = false) => {
    const { col, channel } = info.get(item);
    const entry = columns[col];
    if (entry.kind === 'input') return;
    const unit = entry.view ? (event && event.clientX ? unitAt(entry, event) : entry.unit ?? 0) : channel;
    if (unit === null) return;
    store.set({ focusDetail: keyboard, selected: { layer: entry.layer, channel: unit } });
    if (!keyboard) requestAnimationFrame(() => byId('detail').scrollIntoView({ block: 'start' })); // at once: no frames of scrolling
  };
  wrap.addEventListener('click', (event) => {
    const item = event.target.closest('.ov-item');
    if (item) select(item, event);
  });

  // -- painting -----------------------------------------------------------------------------------
  let painted = new WeakSet(); // the canvases drawn for the current trace and range mode
  let limitsOf = null;
  /** Paint what is on screen and not yet painted (after a layout shows more maps). */
  function paintVisible() {
    const trace = store.get('trace');
    if (!trace || !limitsOf) return;
    const arrays = activations(trace);
    columns.forEach((entry, col) => {
      if (entry.scores || entry.type !== 'maps') return;
      const limits = limitsOf(col);
      entry.items.forEach((canvas, c) => {
        if (canvas.hidden || painted.has(canvas)) return;
        paintMap(canvas, arrays[col], c, limits(c), entry.kind === 'input' ? inputScale(arrays[col], c) : null);
        painted.add(canvas);
      });
    });
  }

  const paint = () => timed('overview', () => {
    const trace = store.get('trace');
    if (!trace) return;
    const arrays = activations(trace);
    const mode = store.get('rangeMode');
    const global = colourLimit(arrays, 0, 0, 'global');
    painted = new WeakSet();
    const layerLimits = arrays.map((_, col) => colourLimit(arrays, col, 0, 'layer'));
    limitsOf = (col) => ({
      unit: (c) => colourLimit(arrays, col, c, 'unit'), layer: () => layerLimits[col], global: () => global,
    })[mode];
    columns.forEach((entry, col) => {
      if (entry.scores) {
        entry.paint(trace);
        return;
      }
      if (entry.type !== 'maps') entry.paint(arrays[col], limitsOf(col));
      entry.key.replaceChildren(columnLegend(entry, arrays[col], mode, layerLimits[col]));
    });
    paintVisible();
    const scale = mode === 'unit' ? 'each map on its own scale (hover a map for its own)' : 'each layer on its own scale';
    viewLegend.replaceChildren(mode === 'global' ? legend(global, 'whole network')
      : h('span', { class: 'muted', text: `colours: ${scale}` }));
    if (hovered && !hovered.isConnected) highlight(null);
  });

  /** Under a column: its scale (the layer's, or the range of its maps' own), or the picture's. */
  const columnLegend = (entry, array, mode, layerLimit) => {
    if (entry.kind === 'input' && entry.named) {
      return h('span', { class: 'ov-key-note muted', text: array.shape[0] === 3 ? 'red, green, blue' : 'grey' });
    }
    if (mode === 'layer') return legend(layerLimit, '', 2);
    if (mode === 'unit' && array.shape.length >= 3) {
      const size = array.shape[1] * array.shape[2];
      const own = Array.from({ length: array.shape[0] }, (_, c) => colourLimit([array], 0, c, 'unit'));
      const key = legend(Math.max(...own), 'each map', 2);
      key.classList.add('per-map'); // its numbers in the tooltip, and the hovered map's in the readout
      key.querySelector('.legend-max').textContent = '';
      key.title = `each map on its own scale: from ±${fmt(Math.min(...own), 3)} to ±${fmt(Math.max(...own), 3)} (${size} values a map)`;
      return key;
    }
    return '';
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
  layout();
}

/** A layer's settings for a tooltip: operation, shapes, parameters. */
function describeLayer(layer) {
  const settings = Object.entries(layer.config).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n');
  return `${layer.label}\n${shapeText(layer.input_shape)} → ${shapeText(layer.output_shape)}`
    + `\n${layer.parameters.toLocaleString('en')} parameters${settings ? `\n${settings}` : ''}`;
}
