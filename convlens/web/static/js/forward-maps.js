// Shared pieces of the forward-pass views: a tiny DOM builder, MathML, the arrays a layer
// reads and writes, map geometry for any shape, and MapView (a scalable map with marks).
import {
  absMax, canvasPixels, colourLimit, css, diverging, fmt, imageRange, inputChannel, lookup, packed, scale,
} from './colors.js';
import { fill, h, mathml, shapeText, svg } from './dom.js';

export { fill, h, mathml, shapeText, svg };

/**
 * MathML for `name[i, j, …]`: a number index becomes <mn>, a one-letter one <mi>, anything
 * else is taken as MathML markup. `name` may be markup too (e.g. a subscripted x).
 */
export function indexed(name, ...indices) {
  const part = (v) => (typeof v === 'number' ? `<mn>${v}</mn>` : /^[A-Za-z]$/.test(v) ? `<mi>${v}</mi>` : v);
  return `<mrow>${part(name)}<mo>[</mo>${indices.map(part).join('<mo>,</mo>')}<mo>]</mo></mrow>`;
}

/** A number as MathML: <mn>, with a real minus sign as an operator. */
export function mn(value, digits = 4) {
  const text = fmt(value, digits);
  return text.startsWith('−') ? `<mrow><mo>−</mo><mn>${text.slice(1)}</mn></mrow>` : `<mn>${text}</mn>`;
}

/** `[input, output of layer 0, output of layer 1, ...]`: layer L reads [L] and writes [L + 1]. */
export const activations = (trace) => [trace.input, ...trace.layers.map((layer) => layer.output)];

/** The colour limit for channel `channel` of activation `index`, under the page's range mode. */
export function limitFor(store, index, channel) {
  return colourLimit(activations(store.get('trace')), index, channel, store.get('rangeMode'));
}

/** Rows × columns for showing a vector of `n` values as a compact grid. */
export function vectorGrid(n, maxRows = 64) {
  const cols = Math.ceil(n / maxRows);
  return { rows: Math.ceil(n / cols), cols };
}

/**
 * How an array of `shape` is shown: `count` maps of rows × cols, `size` values each.
 * (C, H, W) → C maps of H × W; a vector → one grid (see vectorGrid).
 */
export function mapsOf(shape, maxRows) {
  if (shape.length >= 3) {
    const [rows, cols] = shape.slice(-2);
    return { count: shape.length === 3 ? shape[0] : 1, rows, cols, size: rows * cols };
  }
  const n = shape.reduce((a, b) => a * b, 1);
  return { count: 1, size: n, ...vectorGrid(n, maxRows) };
}

/** [row, col] of the largest value of map `channel` of a (C, H, W) array. */
export function brightest(array, channel) {
  const [rows, cols] = array.shape.slice(-2);
  const start = channel * rows * cols;
  let best = start;
  for (let k = start; k < start + rows * cols; k++) if (array.data[k] > array.data[best]) best = k;
  return [Math.floor((best - start) / cols), (best - start) % cols];
}

/** Paint an input image (C, H, W) as a picture: RGB when C = 3, else grey from channel 0. */
export function paintImage(canvas, array) {
  const [C, H, W] = array.shape;
  const { image } = canvasPixels(canvas, W, H);
  const [lo, hi] = imageRange(array.data); // values in [0, 1] are shown as they are; others stretched to fit
  const k = 255 / (hi - lo || 1);
  const out = image.data;
  const planes = C === 3 ? [0, 1, 2] : [0, 0, 0];
  for (let p = 0; p < H * W; p++) {
    for (let j = 0; j < 3; j++) out[4 * p + j] = (array.data[planes[j] * H * W + p] - lo) * k; // clamped, rounded
    out[4 * p + 3] = 255;
  }
  canvas.getContext('2d').putImageData(image, 0, 0);
}

/**
 * The scale that paints channel `c` of an input image `array` in the channel's own colour
 * (red, green, blue or grey), or null when the input's channels have no such names.
 */
export function inputScale(array, c) {
  const count = array.shape[0];
  if (array.shape.length < 3 || !inputChannel(count, c)) return null;
  const [lo, hi] = imageRange(array.data);
  return scale(0, [count, c, lo, hi]);
}

/** "red channel (c = 0)" for a named input channel, else "channel c". */
export function channelName(count, c, named = true) {
  const channel = named ? inputChannel(count, c) : null;
  return channel ? `${channel.name} channel (c = ${c})` : `channel ${c}`;
}

const NO_PAD = { top: 0, bottom: 0, left: 0, right: 0 };
const CHECKS = [packed([240, 242, 245]), packed([226, 230, 236])]; // padding cells, checkered

/**
 * A map of rows × cols values drawn `size` CSS pixels on its longer side (or stretched to
 * `width` × `height`), with optional padding cells around it (hatched), and named groups of
 * marks (rectangles over cells). Cell coordinates are the unpadded ones: padding cells have
 * negative or overflowing indices.
 */
export class MapView {
  constructor({ rows, cols, pad = NO_PAD, size = 160, width, height, label = '', className = '' }) {
    Object.assign(this, { rows, cols, pad });
    this.fullRows = rows + pad.top + pad.bottom;
    this.fullCols = cols + pad.left + pad.right;
    const scale = size / Math.max(this.fullRows, this.fullCols);
    width = width ?? this.fullCols * scale;
    height = height ?? this.fullRows * scale;
    this.canvas = h('canvas', { class: 'map', width: this.fullCols, height: this.fullRows });
    this.marks = svg('svg', {
      class: 'marks', preserveAspectRatio: 'none',
      viewBox: `${-pad.left} ${-pad.top} ${this.fullCols} ${this.fullRows}`,
    });
    this.groups = new Map();
    this.element = h('div', {
      class: `mapview ${className}`.trim(),
      style: `width: ${Math.round(width)}px; height: ${Math.round(height)}px`,
      'aria-label': label || undefined, role: label ? 'img' : undefined,
    }, this.canvas, this.marks);
  }

  /**
   * Paint value(r, c) for every inside cell: diverging around 0 with `limit`, or through
   * `paintScale` (colors.js scale(), e.g. an input channel's own colour); padding hatched.
   */
  paint(value, limit, paintScale = null) {
    const s = paintScale || scale(limit);
    const { image, words } = canvasPixels(this.canvas, this.fullCols, this.fullRows);
    for (let R = 0; R < this.fullRows; R++) {
      for (let C = 0; C < this.fullCols; C++) {
        const r = R - this.pad.top;
        const c = C - this.pad.left;
        const inside = r >= 0 && r < this.rows && c >= 0 && c < this.cols;
        const v = inside ? value(r, c) : undefined;
        words[R * this.fullCols + C] = v === undefined ? CHECKS[(R + C) % 2] : lookup(s, v);
      }
    }
    this.canvas.getContext('2d').putImageData(image, 0, 0);
    return this;
  }

  /** Paint `count` values of `data` from `offset`, in rows × cols order (extra cells blank). */
  paintData(data, offset, count, limit, paintScale = null) {
    return this.paint((r, c) => {
      const k = r * this.cols + c;
      return k < count ? data[offset + k] : undefined;
    }, limit, paintScale);
  }

  /** Replace the marks of group `name` by rectangles {r, c, h = 1, w = 1} with class `cls`. */
  mark(name, cells, cls = name) {
    if (!this.groups.has(name)) {
      const group = svg('g', { class: cls });
      this.groups.set(name, group);
      this.marks.append(group);
    }
    this.groups.get(name).replaceChildren(...cells.map(({ r, c, h: height = 1, w = 1 }) => svg('rect', {
      x: c, y: r, width: w, height, 'vector-effect': 'non-scaling-stroke',
    })));
  }

  /** The unpadded cell [r, c] under a pointer event, or null outside the map. */
  cellAt(event) {
    const box = this.element.getBoundingClientRect();
    const R = Math.floor(((event.clientY - box.top) / box.height) * this.fullRows);
    const C = Math.floor(((event.clientX - box.left) / box.width) * this.fullCols);
    const r = R - this.pad.top;
    const c = C - this.pad.left;
    return r >= 0 && r < this.rows && c >= 0 && c < this.cols ? [r, c] : null;
  }

  /** fn([r, c]) when the pointer moves over a cell (and on click); keyboard arrows too. */
  onCell(fn, current) {
    const handle = (event) => {
      const cell = this.cellAt(event);
      if (cell) fn(cell);
    };
    this.element.addEventListener('pointermove', handle);
    this.element.addEventListener('click', handle);
    this.element.tabIndex = 0;
    this.element.addEventListener('keydown', (event) => {
      const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[event.key];
      if (!step) return;
      event.preventDefault();
      const [r, c] = current();
      fn([Math.min(this.rows - 1, Math.max(0, r + step[0])), Math.min(this.cols - 1, Math.max(0, c + step[1]))]);
    });
    return this;
  }
}

/** A small kh × kw grid of numbers as a MapView with each value in its tooltip. */
export function kernelView(values, limit, size, anchor) {
  const rows = values.length;
  const cols = values[0].length;
  const view = new MapView({ rows, cols, size, className: 'kernel' });
  view.paint((r, c) => values[r][c], limit);
  view.element.title = values.map((row) => row.map((v) => fmt(v, 3)).join('  ')).join('\n');
  if (anchor) view.mark('anchor', [{ r: anchor[0], c: anchor[1] }]);
  return view;
}

/** A light tint of the diverging colour, readable behind dark numbers. */
export const tint = (value, limit) => css(diverging(0.5 * (value ?? 0), limit));

/**
 * A table of numbers: `values[r][c]` to `digits` significant digits, tinted by value against
 * `limit`, each cell with data-role, data-r/-c and the attributes `cellAttrs(r, c)` returns.
 */
export function numberTable(values, role, limit, cellAttrs = () => ({}), digits = 4) {
  return h('table', { class: `numbers ${role}s` }, h('tbody', {}, values.map((row, r) => h('tr', {},
    row.map((v, c) => h('td', {
      'data-role': role, 'data-r': r, 'data-c': c, style: `background: ${tint(v, limit)}`, ...cellAttrs(r, c), text: fmt(v, digits),
    }))))));
}

/** Size `layer` (an SVG laid over `container`) to the container's whole scrollable area. */
export function fitOver(layer, container) {
  layer.setAttribute('width', container.scrollWidth);
  layer.setAttribute('height', container.scrollHeight);
}

/**
 * Curved SVG paths between element pairs [from, to, cls], in `container`'s coordinates:
 * from the `fromSide` of `from` ('right' or 'bottom') to the `toSide` of `to` ('left' or 'top').
 */
export function links(container, pairs, fromSide = 'right', toSide = 'left') {
  const base = container.getBoundingClientRect();
  const point = (element, side) => {
    const box = element.getBoundingClientRect();
    const x = { left: box.left, right: box.right }[side] ?? (box.left + box.right) / 2;
    const y = { top: box.top, bottom: box.bottom }[side] ?? (box.top + box.bottom) / 2;
    return [x - base.left + container.scrollLeft, y - base.top + container.scrollTop];
  };
  return pairs.map(([from, to, cls = '']) => {
    const [x1, y1] = point(from, fromSide);
    const [x2, y2] = point(to, toSide);
    const d = fromSide === 'right'
      ? `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`
      : `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
    return svg('path', { d, class: cls });
  });
}

/** The range (min, max) of data[start, start + count) as text, for tooltips. */
export function rangeText(data, start = 0, count = data.length) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = start; i < start + count; i++) {
    lo = Math.min(lo, data[i]);
    hi = Math.max(hi, data[i]);
  }
  return `${fmt(lo, 3)} … ${fmt(hi, 3)}`;
}

/** A "label: value" chip for hyperparameters. */
export const param = (label, value, title) => h('span', { class: 'param', title }, h('b', { text: label }), ` ${value}`);

/** max |v| over a nested list of numbers (kernels, windows). */
export const nestedAbsMax = (values) => absMax(Float64Array.from(values.flat(Infinity), (v) => v ?? 0));
