// Colour scales: diverging for activations and gradients (blue < 0 < orange, white at 0),
// sequential for probabilities, the input's own channels (red, green, blue, or grey) in their
// colours, and the range switch (each map / each layer / whole network). Maps are painted
// through look-up tables straight into the canvas's pixels: a map of 64×64 costs ~0.1 ms.

/** A diverging colour for `value` in a range symmetric around 0: [r, g, b]. */
export function diverging(value, limit) {
  const t = limit > 0 ? Math.max(-1, Math.min(1, value / limit)) : 0;
  const white = [247, 247, 247];
  const end = t < 0 ? [33, 102, 172] : [214, 96, 39];
  const k = Math.abs(t);
  return white.map((w, i) => Math.round(w + (end[i] - w) * k));
}

/** A sequential colour for `value` in [0, 1]: white to dark teal. */
export function sequential(value) {
  const t = Math.max(0, Math.min(1, value));
  return [247 - 200 * t, 252 - 130 * t, 253 - 120 * t].map(Math.round);
}

export const css = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

/** The text colour readable on background [r, g, b]: white or the page's ink, whichever contrasts more. */
export function inkOn(rgb) {
  const [r, g, b] = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const light = 0.2126 * r + 0.7152 * g + 0.0722 * b; // relative luminance
  return 1.05 / (light + 0.05) > (light + 0.05) / 0.0672 ? '#fff' : '#1d2430'; // #1d2430: L ≈ 0.0172
}

/** The input's channels by their names: what each is called and the colour of its full value. */
const CHANNELS = {
  1: [{ name: 'grey', full: [255, 255, 255] }],
  3: [{ name: 'red', full: [255, 0, 0] }, { name: 'green', full: [0, 200, 0] }, { name: 'blue', full: [40, 90, 255] }],
};

/**
 * The input's channel `c` of `count`, when the input has named channels (grey, or red /
 * green / blue): {name, full: [r, g, b], colour(value01) -> [r, g, b]}, else null.
 */
export function inputChannel(count, c) {
  const channel = (CHANNELS[count] || [])[c];
  if (!channel) return null;
  return { ...channel, colour: (v) => channel.full.map((x) => Math.round(x * Math.max(0, Math.min(1, v)))) };
}

/** The range an input image is shown in: [0, 1], widened to hold every value. */
export function imageRange(data) {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    else if (v > hi) hi = v;
  }
  return [lo, hi];
}

// -- look-up tables -----------------------------------------------------------------------------
const STEPS = 1024; // colours per table: finer than any screen shows
const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const pack = ([r, g, b]) => (little ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0);

/** STEPS + 1 packed colours for t = 0 … 1 of `colour(t)`. */
function table(colour) {
  const lut = new Uint32Array(STEPS + 1);
  for (let k = 0; k <= STEPS; k++) lut[k] = pack(colour(k / STEPS));
  return lut;
}

const DIVERGING = table((t) => diverging(2 * t - 1, 1));
const channelTables = new Map();
const channelTable = (count, c) => {
  const key = `${count}:${c}`;
  if (!channelTables.has(key)) channelTables.set(key, table(inputChannel(count, c).colour));
  return channelTables.get(key);
};

/**
 * A scale for painting: `{lut, lo, hi}` maps value lo → lut[0] and hi → lut[STEPS]. The
 * default: diverging around 0 with `limit`; `input: [count, c, lo, hi]` the input's channel c.
 */
export function scale(limit, input = null) {
  if (input && inputChannel(input[0], input[1])) {
    const [count, c, lo, hi] = input;
    return { lut: channelTable(count, c), lo, hi };
  }
  const l = limit > 0 ? limit : 1;
  return { lut: limit > 0 ? DIVERGING : table(() => [247, 247, 247]), lo: -l, hi: l };
}

const images = new WeakMap(); // canvas -> its reused ImageData

/** The canvas's pixels to write (reused while its size stays), as packed 32-bit colours. */
function pixels(canvas, W, H) {
  if (canvas.width !== W) canvas.width = W;
  if (canvas.height !== H) canvas.height = H;
  let image = images.get(canvas);
  if (!image || image.width !== W || image.height !== H) {
    image = new ImageData(W, H);
    images.set(canvas, image);
  }
  return { image, words: new Uint32Array(image.data.buffer) };
}

/** The packed colour of `value` under scale `s` (for painting cell by cell). */
export function lookup(s, value) {
  const step = (value - s.lo) * (STEPS / (s.hi - s.lo || 1));
  return s.lut[step > 0 ? (step < STEPS ? step + 0.5 | 0 : STEPS) : 0];
}

/** [r, g, b] as a packed colour for canvasPixels' words. */
export const packed = pack;

export { pixels as canvasPixels };

/** Write `count` values of `data` from `offset` through `s` into `words` (the rest stays). */
function fill(words, data, offset, count, s) {
  const k = STEPS / (s.hi - s.lo || 1);
  const { lut, lo } = s;
  for (let i = 0; i < count; i++) {
    let step = (data[offset + i] - lo) * k;
    step = step > 0 ? (step < STEPS ? step + 0.5 | 0 : STEPS) : 0; // NaN → 0
    words[i] = lut[step];
  }
}

/**
 * Paint one (H, W) map of `array` (channel `channel`) into `canvas`, pixel per value:
 * diverging with `limit`, or with `paintScale` (see scale()) when given.
 */
export function paintMap(canvas, array, channel, limit, paintScale = null) {
  const [H, W] = array.shape.length >= 3 ? array.shape.slice(-2) : [1, array.shape[0]];
  const { image, words } = pixels(canvas, W, H);
  fill(words, array.data, array.shape.length >= 3 ? channel * H * W : 0, H * W, paintScale || scale(limit));
  canvas.getContext('2d').putImageData(image, 0, 0);
}

/** Paint `values` row-major into a rows × cols canvas, pixel per value (cells past the end stay blank). */
export function paintValues(canvas, values, rows, cols, limit, paintScale = null) {
  const { image, words } = pixels(canvas, cols, rows);
  words.fill(0);
  fill(words, values, 0, Math.min(values.length, rows * cols), paintScale || scale(limit));
  canvas.getContext('2d').putImageData(image, 0, 0);
}

/** max |value| over data[start, start+count). */
export function absMax(data, start = 0, count = data.length) {
  let m = 0;
  for (let i = start; i < start + count; i++) {
    const v = data[i] < 0 ? -data[i] : data[i];
    if (v > m) m = v;
  }
  return m;
}

/**
 * The symmetric colour limit for map `channel` of `arrays[layer]` under `mode`:
 * 'unit' — that map alone; 'layer' — every map of that layer; 'global' — every layer.
 * `arrays` is a list of {shape, data}; a map is the last two axes (or the whole vector).
 */
export function colourLimit(arrays, layer, channel, mode) {
  const array = arrays[layer];
  if (mode === 'global') return Math.max(...arrays.filter(Boolean).map(peak));
  if (mode === 'layer' || array.shape.length < 3) return peak(array);
  const size = array.shape[1] * array.shape[2];
  return absMax(array.data, channel * size, size);
}

// max |value| of a whole array, kept with the array (a trace's arrays never change)
const peaks = new WeakMap();
function peak(array) {
  if (!peaks.has(array.data)) peaks.set(array.data, absMax(array.data));
  return peaks.get(array.data);
}

/** A legend: a gradient bar from −limit to +limit with its numbers (`digits` significant). */
export function legend(limit, label = 'value', digits = 3) {
  const element = document.createElement('div');
  element.className = 'legend';
  const stops = [-1, -0.5, 0, 0.5, 1].map((t) => `${css(diverging(t * limit, limit))} ${(t + 1) * 50}%`);
  element.innerHTML = `<span class="legend-label">${label}</span>
    <span class="legend-min">${fmt(-limit, digits)}</span>
    <span class="legend-bar" style="background: linear-gradient(to right, ${stops.join(', ')})"></span>
    <span class="legend-max">${fmt(limit, digits)}</span>`;
  return element;
}

/** Numbers as the page prints them: `digits` significant digits, real minus signs (the exponent's too). */
export function fmt(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return '·';
  const text = Number(value).toPrecision(digits);
  return String(Number(text)).replace('e+', 'e').replace(/-/g, '−');
}
