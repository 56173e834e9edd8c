// Colour scales: diverging for activations and gradients (blue < 0 < orange, white at 0),
// sequential for probabilities, and the range switch (each map / each layer / whole network).

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

/** max |value| over data[start, start+count). */
export function absMax(data, start = 0, count = data.length) {
  let m = 0;
  for (let i = start; i < start + count; i++) m = Math.max(m, Math.abs(data[i]));
  return m;
}

/**
 * The symmetric colour limit for map `channel` of `arrays[layer]` under `mode`:
 * 'unit' — that map alone; 'layer' — every map of that layer; 'global' — every layer.
 * `arrays` is a list of {shape, data}; a map is the last two axes (or the whole vector).
 */
export function colourLimit(arrays, layer, channel, mode) {
  const array = arrays[layer];
  if (mode === 'global') return Math.max(...arrays.filter(Boolean).map((a) => absMax(a.data)));
  if (mode === 'layer' || array.shape.length < 3) return absMax(array.data);
  const size = array.shape[1] * array.shape[2];
  return absMax(array.data, channel * size, size);
}

/** Paint one (H, W) map of `array` (channel `channel`) into `canvas`, pixel per value. */
export function paintMap(canvas, array, channel, limit) {
  const [H, W] = array.shape.length >= 3 ? array.shape.slice(-2) : [1, array.shape[0]];
  canvas.width = W;
  canvas.height = H;
  const context = canvas.getContext('2d');
  const image = context.createImageData(W, H);
  const offset = array.shape.length >= 3 ? channel * H * W : 0;
  for (let i = 0; i < H * W; i++) {
    const [r, g, b] = diverging(array.data[offset + i], limit);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

/** A legend: a gradient bar from −limit to +limit with its numbers. */
export function legend(limit, label = 'value') {
  const element = document.createElement('div');
  element.className = 'legend';
  const stops = [-1, -0.5, 0, 0.5, 1].map((t) => `${css(diverging(t * limit, limit))} ${(t + 1) * 50}%`);
  element.innerHTML = `<span class="legend-label">${label}</span>
    <span class="legend-min">${(-limit).toPrecision(3)}</span>
    <span class="legend-bar" style="background: linear-gradient(to right, ${stops.join(', ')})"></span>
    <span class="legend-max">${limit.toPrecision(3)}</span>`;
  return element;
}

/** Numbers as the page prints them: 4 significant digits, a real minus sign. */
export function fmt(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return '·';
  const text = Number(value).toPrecision(digits);
  const clean = String(Number(text));
  return clean.replace('-', '−');
}

/** Paint `values` row-major into a rows × cols canvas, pixel per value (cells past the end stay blank). */
export function paintValues(canvas, values, rows, cols, limit) {
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext('2d');
  const image = context.createImageData(cols, rows);
  for (let i = 0; i < values.length; i++) {
    const [r, g, b] = diverging(values[i], limit);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}
