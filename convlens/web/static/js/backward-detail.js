// How one value dL/dx[index] of a layer's input was computed by its backward pass, drawn
// from the /api/explain payload by the layer's `operation`: the full convolution with the
// rotated kernel (sliding over δ̃ when the view has a scanner), the max-pool's argmax mask,
// δ·f′(x), Σ δ·W, or just the value. Layers with parameters add how one weight's or bias's
// own gradient was computed (POST /api/explain with `parameter`), number by number.
import { api, decodeArray } from './api.js';
import { css, diverging, fmt, paintValues } from './colors.js';
import { dL, h, math, mn, numberGrid, shapeText, short, svg } from './backward-ui.js';
import { MapView } from './forward-maps.js';

const ELEMENTWISE = {
  relu: 'f′(x) = 1 where x > 0, else 0: ReLU passes δ where the input was positive and blocks it elsewhere.',
  sigmoid: 'f′(x) = σ(x)·(1 − σ(x)), at most 1/4: a sigmoid always shrinks the gradient, most where it saturates.',
  tanh: 'f′(x) = 1 − tanh²(x), at most 1: the gradient fades where tanh saturates.',
};
const VALUE_ONLY = {
  flatten: 'Flatten only reshapes (C-order): x[c, h, w] became y[k], and its gradient is copied back unchanged.',
  dropout: 'In evaluation Dropout is the identity, so the gradient passes unchanged.',
  'avg-pool': 'Average pooling spreads each δ evenly over its window — δ/(kh·kw) to every cell — adding up where windows overlap.',
};

/**
 * The #grad-detail element for `payload` of layer `ctx.layer`. `ctx`: {model, trace, layer},
 * and optionally `store` (for the parameter gradients), `memory` (kept across re-renders of
 * the same gradient map) and `scan` (a forward-scan.js scanner over the input positions).
 */
export function renderDetail(payload, ctx) {
  const layer = ctx.model.layers[ctx.layer];
  const draw = RENDERERS[payload.operation]
    || ('local_derivative' in payload ? elementwise : valueOnly);
  return h('div', { id: 'grad-detail', 'data-operation': payload.operation, 'data-index': JSON.stringify(payload.index) },
    h('p', { class: 'gd-kicker' }, `layer ${ctx.layer} · ${layer.label} · backward`),
    h('h3', {}, `dL/dx[${payload.index.join(', ')}] = `,
      h('strong', { id: 'grad-value', 'data-value': String(payload.value) }, fmt(payload.value))),
    h('p', { class: 'muted small' }, `x is this layer's input (${shapeText(layer.input_shape)}); δ = dL/dy is the gradient at its output (${shapeText(layer.output_shape)}), from the layer above.`),
    draw(payload, ctx, layer));
}

/** A nested list turned 180°: rows reversed, each row reversed. */
const rotate180 = (grid) => grid.slice().reverse().map((row) => row.slice().reverse());

const ROT = '<mi mathvariant="normal">rot180</mi>';
const xAt = (index) => `<mi>x</mi><mo>[</mo>${index.map((i) => `<mn>${i}</mn>`).join('<mo>,</mo>')}<mo>]</mo>`;

// -- convolution ---------------------------------------------------------------------------

function convolution(p, ctx, layer) {
  const sums = p.channel_sums;
  const memory = ctx.memory || {};
  // the channel that adds the most; kept while the kernel slides, so that the pictures stay put
  let featured = memory.featured ?? sums.reduce((best, v, o) => (Math.abs(v) > Math.abs(sums[best]) ? o : best), 0);
  if (ctx.scan) memory.featured = featured;
  const inside = h('div', { class: 'gd-inside' });
  const chips = h('div', { class: 'gd-chips', role: 'group', 'aria-label': 'output channels: pick one to look inside' });
  const draw = () => {
    chips.replaceChildren(...sums.map((v, o) => h('button', {
      type: 'button', class: o === featured ? 'chip on' : 'chip', 'aria-pressed': String(o === featured),
      'data-role': 'grad-channel-sum', 'data-channel': o, 'data-value': String(v),
      style: `border-color:${css(diverging(v, Math.max(...sums.map(Math.abs))))}`,
      onclick: () => { featured = o; memory.featured = o; draw(); },
    }, h('span', { class: 'chip-o' }, `o=${o}`), short(v))));
    inside.dataset.outChannel = String(featured);
    inside.replaceChildren(...convChannel(p, ctx, layer, featured));
  };
  draw();
  const dilation = layer.config.dilation;
  return h('div', {},
    math(`${dL('<msub><mi>x</mi><mi>c</mi></msub>')}<mo>=</mo><munder><mo>∑</mo><mi>o</mi></munder><msub><mi>δ</mi><mi>o</mi></msub><msub><mo>∗</mo><mtext>full</mtext></msub><msub><mi>K</mi><mrow><mi>o</mi><mo>,</mo><mi>c</mi></mrow></msub><mo>=</mo><munder><mo>∑</mo><mi>o</mi></munder><msub><mover><mi>δ</mi><mo>~</mo></mover><mi>o</mi></msub><mo>⋆</mo>${ROT}<mo>(</mo><msub><mi>K</mi><mrow><mi>o</mi><mo>,</mo><mi>c</mi></mrow></msub><mo>)</mo>`, true),
    h('p', { class: 'small' }, 'The input gradient is a ', h('em', {}, 'full'), ' convolution of δ with the kernel K: spread δ by the stride (s − 1 zeros between neighbours), pad it by d·(k − 1) on every side (less the forward padding) into δ̃, and slide the kernel ',
      h('em', {}, 'turned by 180°'), ' over it (⋆: multiply and add, as in the forward pass).'),
    math(`${dL(xAt(p.index))}<mo>=</mo><munder><mo>∑</mo><mi>o</mi></munder><munder><mo>∑</mo><mrow><mi>a</mi><mo>,</mo><mi>b</mi></mrow></munder><msub><mover><mi>δ</mi><mo>~</mo></mover><mi>o</mi></msub><mo>[</mo><mn>${p.index[1]}</mn><mo>+</mo><mi>a</mi>${dilation[0] > 1 ? `<mo>·</mo><mn>${dilation[0]}</mn>` : ''}<mo>,</mo><mn>${p.index[2]}</mn><mo>+</mo><mi>b</mi>${dilation[1] > 1 ? `<mo>·</mo><mn>${dilation[1]}</mn>` : ''}<mo>]</mo><mo>·</mo>${ROT}<mo>(</mo><msub><mi>K</mi><mrow><mi>o</mi><mo>,</mo><mn>${p.index[0]}</mn></mrow></msub><mo>)</mo><mo>[</mo><mi>a</mi><mo>,</mo><mi>b</mi><mo>]</mo>`, true),
    h('h4', {}, `Σ over the ${sums.length} output channels`),
    h('p', { class: 'small muted' }, 'Each output channel o adds one sum of products; click one to look inside it.'),
    chips,
    h('p', { class: 'gd-total' }, `sum of the ${sums.length} channel sums = `, h('strong', {}, fmt(p.value))),
    inside,
    parameterGradients(layer, ctx, { parameter: 'weight', index: [featured, p.index[0], ...layer.config.kernel_size.map((k) => Math.floor(k / 2))] }));
}

/** The pictures for output channel o: δ̃ with the window, the kernel and its turn, the products. */
function convChannel(p, ctx, layer, o) {
  const field = deltaField(ctx, layer, o);
  const [kh, kw] = layer.config.kernel_size;
  const [dh, dw] = layer.config.dilation;
  const [, hh, ww] = p.index;
  const rotated = p.rotated_kernel[o];
  const applied = rotate180(rotated);
  const kernelLimit = Math.max(...rotated.flat().map(Math.abs));
  const convolutionMode = layer.config.mode === 'convolution';
  const tap = (a, b) => field.kind(hh + a * dh, ww + b * dw);
  return [
    h('h4', {}, `Inside output channel o = ${o}`),
    h('div', { class: 'gd-step' },
      h('span', { class: 'step-no' }, '1'),
      h('div', {},
        h('p', { class: 'small' }, `δ${sub(o)} (${field.from}) spread by the stride ${layer.config.stride.join('×')} and padded for a full convolution → δ̃${sub(o)}, ${field.rows}×${field.cols} (padding top ${field.pad[0]}, bottom ${field.pad[1]}, left ${field.pad[2]}, right ${field.pad[3]}). The frame is the window under the rotated kernel for x[${p.index.join(', ')}].`),
        ctx.scan ? slidingWindow(p, ctx, layer, field) : fieldPicture(field, hh, ww, [kh, kw], [dh, dw]),
        h('p', { class: 'keys small' },
          h('span', { class: 'key key-delta' }), 'δ value ', h('span', { class: 'key key-stride' }), 'zero put in by the stride ',
          h('span', { class: 'key key-pad' }), 'padding (zero)'))),
    h('div', { class: 'gd-step' },
      h('span', { class: 'step-no' }, '2'),
      h('div', {},
        h('p', { class: 'small' }, convolutionMode
          ? `K${sub(`${o},${p.index[0]}`)} as the forward pass applied it (convolution mode: the stored W already turned 180°), then turned by 180° for the backward pass — which gives back the stored W. Follow the coloured corners.`
          : `The kernel K${sub(`${o},${p.index[0]}`)} = W[${o}, ${p.index[0]}], then turned by 180° (rows and columns reversed) for the backward pass. Follow the coloured corners.`),
        h('div', { class: 'gd-row' },
          figure(convolutionMode ? 'K (applied)' : 'K = W (stored)', numberGrid(applied, { limit: kernelLimit, corners: true, role: 'kernel', label: 'kernel' })),
          h('span', { class: 'turn', 'aria-label': 'turned by 180 degrees' }, '↻ 180°'),
          figure('rot180(K)', numberGrid(rotated, { limit: kernelLimit, corners: true, rotated: true, role: 'rotated-kernel', label: 'rotated kernel' }))))),
    h('div', { class: 'gd-step' },
      h('span', { class: 'step-no' }, '3'),
      h('div', {},
        h('p', { class: 'small' }, 'Multiply the window of δ̃ by the rotated kernel, element by element, and add up.'),
        h('div', { class: 'gd-row' },
          figure('δ̃ window', numberGrid(p.deltas[o], {
            role: 'delta-window', label: 'window of delta',
            cell: (a, b) => ({ class: `kind-${tap(a, b)}` }),
          })),
          h('span', { class: 'op' }, '⊙'),
          figure('rot180(K)', numberGrid(rotated, { limit: kernelLimit, role: 'rotated-kernel-copy', label: 'rotated kernel' })),
          h('span', { class: 'op' }, '='),
          figure('products', numberGrid(p.products[o], { role: 'products', label: 'products', cellRole: 'grad-product' }))),
        h('p', { class: 'gd-total' }, `sum of the products, channel ${o}'s share of dL/dx: `,
          h('strong', { class: 'gd-sum' }, fmt(p.channel_sums[o]))))),
  ];
}

/** "3,1" -> "₃,₁" */
const sub = (text) => String(text).replace(/\d/g, (d) => '₀₁₂₃₄₅₆₇₈₉'[d]);

/** δ̃ for channel o: the output gradient spread by the stride, fully padded, less the forward padding. */
function deltaField(ctx, layer, o) {
  const cfg = layer.config;
  const [H, W] = layer.input_shape.slice(-2);
  const [, Ho, Wo] = layer.output_shape;
  const [s, d, k] = [cfg.stride, cfg.dilation, cfg.kernel_size];
  const [[top], [left]] = layer.padding2d; // as the engine resolved it
  const ext = [d[0] * (k[0] - 1), d[1] * (k[1] - 1)];
  const before = [ext[0] - top, ext[1] - left];
  const spread = [s[0] * (Ho - 1) + 1, s[1] * (Wo - 1) + 1];
  const dy = ctx.trace.gradients[ctx.layer].data.subarray(o * Ho * Wo, (o + 1) * Ho * Wo);
  const rows = H + ext[0];
  const cols = W + ext[1];
  const kind = (r, q) => {
    const [i, j] = [r - before[0], q - before[1]];
    if (i < 0 || j < 0 || i >= spread[0] || j >= spread[1]) return 'pad';
    return i % s[0] || j % s[1] ? 'stride' : 'delta';
  };
  const value = (r, q) => (kind(r, q) === 'delta' ? dy[((r - before[0]) / s[0]) * Wo + (q - before[1]) / s[1]] : 0);
  const pad = [before[0], rows - before[0] - spread[0], before[1], cols - before[1] - spread[1]];
  return { rows, cols, kind, value, pad, from: `${Ho}×${Wo}`, limit: Math.max(1e-12, ...Array.from(dy, Math.abs)) };
}

/** δ̃ as a grid of coloured cells (hatched padding), the window under the kernel framed. */
function fieldPicture(field, hh, ww, [kh, kw], [dh, dw], onHover = null) {
  const size = Math.max(3, Math.min(18, Math.floor(300 / Math.max(field.rows, field.cols))));
  const canvas = h('canvas', { class: 'field', style: `width:${field.cols * size}px;height:${field.rows * size}px` });
  const values = new Float32Array(field.rows * field.cols);
  for (let r = 0; r < field.rows; r++) for (let q = 0; q < field.cols; q++) values[r * field.cols + q] = field.value(r, q);
  paintValues(canvas, values, field.rows, field.cols, field.limit);
  const overlay = svg('svg', { class: 'field-overlay', width: field.cols * size, height: field.rows * size, 'aria-hidden': 'true' });
  for (let r = 0; r < field.rows; r++) {
    for (let q = 0; q < field.cols; q++) {
      const kind = field.kind(r, q);
      if (kind !== 'delta') overlay.append(svg('rect', { class: `cell-${kind}`, x: q * size, y: r * size, width: size, height: size }));
    }
  }
  overlay.append(svg('rect', {
    class: 'window', x: ww * size, y: hh * size,
    width: ((kw - 1) * dw + 1) * size, height: ((kh - 1) * dh + 1) * size,
  }));
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const [r, q] = [hh + a * dh, ww + b * dw];
      const value = field.value(r, q);
      overlay.append(svg('rect', { class: 'tap', 'data-value': String(value), x: q * size + 1, y: r * size + 1, width: size - 2, height: size - 2 },
        svg('title', {}, `δ̃[${r}, ${q}] = ${fmt(value)} (${field.kind(r, q)})`)));
    }
  }
  const wrap = h('div', {
    class: 'field-wrap', role: 'img', 'data-window': `${hh},${ww}`,
    'aria-label': `delta spread and padded, ${field.rows} by ${field.cols}, window at row ${hh}, column ${ww}`,
  }, canvas, overlay);
  if (onHover) { // the window follows the pointer, centred on it where it fits
    wrap.classList.add('hoverable');
    wrap.addEventListener('pointermove', (event) => {
      const box = canvas.getBoundingClientRect();
      const r = Math.floor((event.clientY - box.top) / size) - Math.floor(((kh - 1) * dh) / 2);
      const q = Math.floor((event.clientX - box.left) / size) - Math.floor(((kw - 1) * dw) / 2);
      onHover([r, q]);
    });
  }
  return wrap;
}

/**
 * δ̃ with the rotated kernel's window, which slides: the scanner's play / step controls, the
 * dL/dx map being filled (hover either picture to move the window), the current position.
 */
function slidingWindow(p, ctx, layer, field) {
  const [c, hh, ww] = p.index;
  const [, H, W] = layer.input_shape;
  const { kernel_size: kernel, dilation } = layer.config;
  const move = ([r, q]) => ctx.scan.hover([Math.max(0, Math.min(H - 1, r)), Math.max(0, Math.min(W - 1, q))]);
  const gradient = ctx.layer === 0 ? ctx.trace.input_gradient : ctx.trace.gradients[ctx.layer - 1];
  const size = Math.max(120, Math.min(180, 8 * Math.max(H, W)));
  const map = new MapView({ rows: H, cols: W, size, label: `dL/dx channel ${c}: hover to move the kernel`, className: 'bw-dx-map' });
  if (gradient) {
    const plane = gradient.data.subarray(c * H * W, (c + 1) * H * W);
    map.paintData(plane, 0, H * W, Math.max(1e-12, ...Array.from(plane, Math.abs)));
  }
  map.mark('current', [{ r: hh, c: ww }]);
  map.onCell(move, () => [hh, ww]);
  return h('div', { class: 'gd-slide' },
    h('div', { class: 'gd-row' },
      figure('δ̃ with the rotated kernel (hover to move it)', fieldPicture(field, hh, ww, kernel, dilation, move)),
      h('span', { class: 'op' }, '→'),
      figure(`dL/dx[${c}] (hover to move)`, map.element)),
    ctx.scan.controls);
}

function figure(caption, content) {
  return h('figure', { class: 'gd-figure' }, content, h('figcaption', {}, caption));
}

/** The same δ trains the layer: dL/dW as a correlation of the input with δ, dL/db = Σ δ. */
function parameterGradients(layer, ctx, initial) {
  const cfg = layer.config;
  const stride = (axis) => (cfg.stride[axis] > 1 ? `<mo>·</mo><mn>${cfg.stride[axis]}</mn>` : '');
  const dil = (axis) => (cfg.dilation[axis] > 1 ? `<mo>·</mo><mn>${cfg.dilation[axis]}</mn>` : '');
  const sumIJ = '<munder><mo>∑</mo><mrow><mi>i</mi><mo>,</mo><mi>j</mi></mrow></munder>';
  return h('section', { class: 'gd-params' },
    h('h4', {}, 'The same δ trains this layer'),
    math(`${dL('<msub><mi>K</mi><mrow><mi>o</mi><mo>,</mo><mi>c</mi></mrow></msub><mo>[</mo><mi>a</mi><mo>,</mo><mi>b</mi><mo>]</mo>')}<mo>=</mo>${sumIJ}<msub><mi>δ</mi><mi>o</mi></msub><mo>[</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>]</mo><mo>·</mo><msub><mi>x</mi><mi>p</mi></msub><mo>[</mo><mi>c</mi><mo>,</mo><mi>i</mi>${stride(0)}<mo>+</mo><mi>a</mi>${dil(0)}<mo>,</mo><mi>j</mi>${stride(1)}<mo>+</mo><mi>b</mi>${dil(1)}<mo>]</mo>`, true),
    h('p', { class: 'small' }, 'dL/dW: the padded input xₚ correlated with δ (δ spread by the stride) — the same sliding window as the forward pass, with δ as the kernel.'
      + (cfg.mode === 'convolution' ? ' In convolution mode the stored W gets this gradient turned back by 180°.' : '')),
    cfg.bias ? math(`${dL('<msub><mi>b</mi><mi>o</mi></msub>')}<mo>=</mo>${sumIJ}<msub><mi>δ</mi><mi>o</mi></msub><mo>[</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>]</mo>`, true) : null,
    cfg.bias ? h('p', { class: 'small' }, 'dL/db: every output position adds its δ to the bias gradient.') : null,
    parameterPanel(ctx, layer, initial)?.element);
}

// -- one parameter's gradient, number by number ----------------------------------------------

/** Grids up to this many cells are drawn as numbers; larger ones as pictures first. */
const MOST_NUMBERS = 196;

/** The stored shape of each parameter of a convolution or dense layer. */
function parameterShapes(layer) {
  const cfg = layer.config;
  const [out, rest] = layer.operation === 'convolution'
    ? [cfg.out_channels, [cfg.in_channels, ...cfg.kernel_size]]
    : [cfg.out_features, [cfg.in_features]];
  return cfg.bias ? { weight: [out, ...rest], bias: [out] } : { weight: [out, ...rest] };
}

/**
 * Pick one weight or bias of the layer (a kernel cell, the bias chip, or the index fields) and
 * see how the engine computed its gradient for this image and target. Kept in `ctx.memory`
 * across re-renders of the same map (the sliding kernel re-renders the pane at every step).
 * Returns {element, choose(choice)}, choice = {parameter, index}; null without a store.
 */
function parameterPanel(ctx, layer, initial) {
  if (!ctx.store) return null;
  const memory = ctx.memory || {};
  const kept = memory.panel;
  if (kept && kept.trace === ctx.trace && kept.layer === ctx.layer) return kept;
  const conv = layer.operation === 'convolution';
  const shapes = parameterShapes(layer);
  const names = conv ? ['o', 'c', 'a', 'b'] : ['i', 'j'];
  const weights = layer.weights?.weight ? decodeArray(layer.weights.weight) : null;
  const biases = layer.weights?.bias ? decodeArray(layer.weights.bias) : null;
  let choice = memory.choice || initial;
  let lastWeight = choice.parameter === 'weight' ? choice.index : initial.index;
  let seq = 0;

  const kind = h('select', { class: 'param-kind', 'aria-label': 'which parameter' },
    Object.keys(shapes).map((name) => h('option', { value: name }, name === 'weight' ? 'weight W' : 'bias b')));
  const fields = names.map((name) => h('input', {
    type: 'number', min: 0, step: 1, class: 'param-index', 'data-axis': name, 'aria-label': `index ${name}`,
  }));
  const labels = fields.map((field, k) => h('label', { class: 'param-field' }, names[k], field));
  const picker = h('div', { class: 'param-picker' });
  const result = h('div', { class: 'param-result', 'aria-live': 'polite' });
  const element = h('div', { class: 'param-panel', 'data-layer': ctx.layer },
    h('h4', {}, conv ? 'One weight’s gradient, number by number' : 'One weight’s gradient'),
    h('p', { class: 'small muted' }, conv
      ? 'Click a cell of the kernel W[o, c] (or the bias), or type an index: the engine shows how it got that weight’s gradient for this image and target.'
      : 'Click a row of the table above (an output i), or type an index: the engine shows how it got that weight’s gradient for this image and target.'),
    h('div', { class: 'param-controls' }, h('label', { class: 'param-field' }, 'parameter', kind), labels),
    picker, result);

  const show = () => {
    kind.value = choice.parameter;
    const shape = shapes[choice.parameter];
    labels.forEach((label, k) => {
      label.hidden = k >= shape.length;
      if (k < shape.length) Object.assign(fields[k], { max: shape[k] - 1, value: choice.index[k] });
    });
    if (conv) drawKernel();
  };
  const choose = (next) => {
    choice = { parameter: next.parameter, index: next.index.slice() };
    if (choice.parameter === 'weight') lastWeight = choice.index;
    memory.choice = choice;
    show();
    fetchGradient();
  };
  async function fetchGradient() {
    const mine = ++seq;
    result.classList.add('busy');
    try {
      const payload = await api.explain(ctx.store.get('image'), ctx.layer, choice.index, ctx.store.get('target'), choice.parameter);
      if (mine === seq) result.replaceChildren(parameterResult(payload, layer));
    } catch (error) {
      if (mine === seq) result.replaceChildren(h('p', { class: 'bw-error', role: 'alert' }, `This gradient could not be explained: ${error.message}`));
    } finally {
      if (mine === seq) result.classList.remove('busy');
    }
  }
  /** W[o, c] as a grid of clickable cells, and the bias b[o]. */
  function drawKernel() {
    const [o, c] = [choice.index[0], (choice.parameter === 'weight' ? choice.index : lastWeight)[1]];
    const [, C, kh, kw] = shapes.weight;
    const parts = [];
    if (weights) {
      const start = (o * C + c) * kh * kw;
      const values = Array.from({ length: kh }, (_, a) => Array.from(weights.data.subarray(start + a * kw, start + (a + 1) * kw)));
      const chosen = choice.parameter === 'weight' ? choice.index.slice(2) : null;
      const grid = numberGrid(values, {
        role: 'param-kernel', label: `kernel W[${o}, ${c}]: click a weight`, cellRole: 'param-kernel-cell',
        cell: (a, b) => ({ class: chosen && a === chosen[0] && b === chosen[1] ? 'chosen' : 'pickable', title: `W[${o}, ${c}, ${a}, ${b}] = ${values[a][b]}: click for its gradient` }),
      });
      grid.addEventListener('click', (event) => {
        const td = event.target.closest('td');
        if (td) choose({ parameter: 'weight', index: [o, c, td.parentElement.rowIndex, td.cellIndex] });
      });
      parts.push(figure(`W[${o}, ${c}] (stored)`, grid));
    }
    if (shapes.bias) {
      parts.push(h('div', { class: 'gd-chips' }, h('button', {
        type: 'button', class: choice.parameter === 'bias' ? 'chip on bias-chip-pick' : 'chip bias-chip-pick', 'data-role': 'param-bias',
        onclick: () => choose({ parameter: 'bias', index: [o] }),
      }, h('span', { class: 'chip-o' }, `b[${o}]`), biases ? short(biases.data[o]) : 'bias')));
    }
    picker.replaceChildren(h('div', { class: 'gd-row' }, parts));
  }

  kind.addEventListener('change', () => choose(kind.value === 'bias'
    ? { parameter: 'bias', index: [choice.index[0]] }
    : { parameter: 'weight', index: [choice.index[0], ...lastWeight.slice(1)] }));
  const typed = () => {
    const shape = shapes[choice.parameter];
    const index = shape.map((n, k) => Math.max(0, Math.min(n - 1, Math.round(Number(fields[k].value) || 0))));
    choose({ parameter: choice.parameter, index });
  };
  fields.forEach((field) => field.addEventListener('change', typed));
  show();
  fetchGradient();
  const panel = { element, choose, trace: ctx.trace, layer: ctx.layer };
  memory.panel = panel;
  return panel;
}

/** The engine's answer for one parameter value, drawn by the layer's operation. */
function parameterResult(p, layer) {
  const name = p.parameter === 'bias' ? 'b' : 'W';
  const draw = p.operation === 'convolution' ? (p.parameter === 'bias' ? convBiasGradient : convWeightGradient)
    : p.operation === 'dense' ? (p.parameter === 'bias' ? denseBiasGradient : denseWeightGradient)
      : () => null;
  return h('div', {
    class: 'param-detail', 'data-operation': p.operation, 'data-parameter': p.parameter, 'data-index': JSON.stringify(p.index),
  },
  h('p', { class: 'param-head' }, `dL/d${name}[${p.index.join(', ')}] = `,
    h('strong', { 'data-role': 'param-value', 'data-value': String(p.value) }, fmt(p.value))),
  draw(p, layer));
}

/** "2, 3, 4, 5" or, for long evenly spaced lists, "2, 4, …, 26". */
const list = (values) => (values.length > 5 && values.every((v, k) => k < 2 || v - values[k - 1] === values[1] - values[0])
  ? `${values[0]}, ${values[1]}, …, ${values[values.length - 1]}` : values.join(', '));

const at = (name, index) => `<mi>${name}</mi><mo>[</mo>${index.map((i) => `<mn>${i}</mn>`).join('<mo>,</mo>')}<mo>]</mo>`;

/** x_p[c, i·s + t·d, …] read by the tap of a conv weight, δ on the same grid, their products. */
function convWeightGradient(p, layer) {
  const [o, c, a, b] = p.index;
  const [ta, tb] = p.tap;
  const [[top], [left]] = p.padding;
  const [H, W] = layer.input_shape.slice(-2);
  const read = (v, s, t, d) => `<mrow><mi>${v}</mi>${s > 1 ? `<mo>·</mo><mn>${s}</mn>` : ''}<mo>+</mo><mn>${t}</mn>${d > 1 ? `<mo>·</mo><mn>${d}</mn>` : ''}</mrow>`;
  const xp = `<msub><mi>x</mi><mi>p</mi></msub><mo>[</mo><mn>${c}</mn><mo>,</mo>${read('i', p.stride[0], ta, p.dilation[0])}<mo>,</mo>${read('j', p.stride[1], tb, p.dilation[1])}<mo>]</mo>`;
  const rotated = p.mode === 'convolution';
  const padded = (i, j) => (p.inside[i][j] ? null : { class: 'kind-pad', text: '0', title: `padding: x[${c}, ${p.rows[i]}, ${p.cols[j]}] lies outside the ${H}×${W} input, read as 0` });
  const n = p.products.length * p.products[0].length;
  return h('div', {},
    math(`${dL(at('W', p.index))}<mo>=</mo><munder><mo>∑</mo><mrow><mi>i</mi><mo>,</mo><mi>j</mi></mrow></munder><msub><mi>δ</mi><mn>${o}</mn></msub><mo>[</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>]</mo><mo>·</mo>${xp}<mo>=</mo>${mn(p.value)}`, true),
    h('p', { class: 'small' }, rotated
      ? `Convolution mode: the kernel is turned by 180° before it slides, so the stored W[${o}, ${c}, ${a}, ${b}] is tap (${ta}, ${tb}) of the kernel as applied. `
      : `W[${o}, ${c}, ${a}, ${b}] is tap (${a}, ${b}) of the kernel as it slides. `,
    `At every output position (i, j) it multiplied the input under that tap: rows ${list(p.rows)} and columns ${list(p.cols)} of input channel ${c}`
      + ` (stride ${p.stride.join('×')}, dilation ${p.dilation.join('×')}, padding top ${top}, left ${left}).`
      + (p.inside.flat().every(Boolean) ? '' : ' Grey cells lie in the padding and read 0.')
      + ` So the weight’s gradient adds up, over all ${n} positions, that input times δ there.`),
    gridTriple(p, [
      { values: p.inputs, caption: `xₚ under tap (${ta}, ${tb})`, role: 'param-inputs', cellRole: 'param-input', cell: padded },
      { op: '⊙', values: p.deltas, caption: `δ${sub(o)} = dL/dy[${o}]`, role: 'param-deltas', cellRole: 'param-delta' },
      { op: '=', values: p.products, caption: 'products', role: 'param-products', cellRole: 'param-product' },
    ], (i, j) => `(${i}, ${j}): xₚ[${c}, ${p.rows[i] + top}, ${p.cols[j] + left}] = ${fmt(p.inputs[i][j])}${p.inside[i][j] ? '' : ' (padding)'} · δ = ${fmt(p.deltas[i][j])} → ${fmt(p.products[i][j])}`),
    sumLine(p.products, p.value, `the ${n} products`));
}

function convBiasGradient(p) {
  const [o] = p.index;
  const n = p.deltas.length * p.deltas[0].length;
  return h('div', {},
    math(`${dL(at('b', p.index))}<mo>=</mo><munder><mo>∑</mo><mrow><mi>i</mi><mo>,</mo><mi>j</mi></mrow></munder><msub><mi>δ</mi><mn>${o}</mn></msub><mo>[</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>]</mo><mo>=</mo>${mn(p.value)}`, true),
    h('p', { class: 'small' }, `b[${o}] was added to every one of the ${n} outputs of channel ${o}, so each sends its δ back to it unchanged.`),
    gridTriple(p, [{ values: p.deltas, caption: `δ${sub(o)} = dL/dy[${o}]`, role: 'param-deltas', cellRole: 'param-delta' }],
      (i, j) => `(${i}, ${j}): δ = ${fmt(p.deltas[i][j])}`),
    sumLine(p.deltas, p.value, `the ${n} values of δ${sub(o)}`));
}

function denseWeightGradient(p) {
  const [i, j] = p.index;
  return h('div', {},
    math(`${dL(at('W', p.index))}<mo>=</mo>${at('x', [j])}<mo>·</mo>${at('δ', [i])}<mo>=</mo>${mn(p.input, true)}<mo>·</mo>${mn(p.delta, true)}<mo>=</mo>${mn(p.value)}`, true),
    h('table', { class: 'numbers gd-facts' }, h('tbody', {},
      factRow(`x[${j}], this layer’s input`, p.input, 'param-input'),
      factRow(`δ[${i}] = dL/dy[${i}], from above`, p.delta, 'param-delta'),
      factRow(`dL/dW[${i}, ${j}] = x[${j}] · δ[${i}]`, p.value, 'param-product'))),
    h('p', { class: 'small' }, `y[${i}] = Σⱼ W[${i}, j]·x[j] + b[${i}]: the weight W[${i}, ${j}] met only x[${j}], and only in output ${i}. Its gradient is that input times that output’s δ — large where a strong input fed an output with a large error.`));
}

function denseBiasGradient(p) {
  const [i] = p.index;
  return h('div', {},
    math(`${dL(at('b', p.index))}<mo>=</mo>${at('δ', [i])}<mo>=</mo>${mn(p.value)}`, true),
    h('table', { class: 'numbers gd-facts' }, h('tbody', {}, factRow(`δ[${i}] = dL/dy[${i}]`, p.delta, 'param-delta'))),
    h('p', { class: 'small' }, `The bias b[${i}] is added to output ${i} alone, so its gradient is that output’s δ.`));
}

/**
 * Grids of the same output shape side by side (`op` between them), as numbers; large grids as
 * pictures with a hover readout, the largest products listed, and every number one click away.
 */
function gridTriple(p, grids, describe) {
  const [rows, cols] = [grids[0].values.length, grids[0].values[0].length];
  const numbers = () => h('div', { class: 'gd-row param-grids' }, grids.map((g) => [
    g.op ? h('span', { class: 'op' }, g.op) : null,
    figure(g.caption, numberGrid(g.values, { role: g.role, cellRole: g.cellRole, label: g.caption, cell: g.cell })),
  ]));
  if (rows * cols <= MOST_NUMBERS) return numbers();
  const readout = h('p', { class: 'param-readout small', 'aria-live': 'polite' }, 'Hover a picture to read one position.');
  const cell = Math.max(3, Math.min(8, Math.floor(150 / Math.max(rows, cols))));
  const cursors = [];
  const pictures = grids.map((g) => {
    const canvas = h('canvas', { class: 'param-heat', style: `width:${cols * cell}px;height:${rows * cell}px` });
    const flat = Float32Array.from(g.values.flat());
    paintValues(canvas, flat, rows, cols, Math.max(1e-12, ...Array.from(flat, Math.abs)));
    const cursor = h('span', { class: 'cursor', hidden: true, style: `width:${cell}px;height:${cell}px` });
    cursors.push(cursor);
    const overlay = g.cell ? svg('svg', { class: 'heat-pad', width: cols * cell, height: rows * cell, 'aria-hidden': 'true' },
      g.values.flatMap((row, i) => row.map((_, j) => (g.cell(i, j) ? svg('rect', { x: j * cell, y: i * cell, width: cell, height: cell }) : null)))) : null;
    const wrap = h('span', { class: 'gmap heat' }, canvas, overlay, cursor);
    wrap.addEventListener('pointermove', (event) => {
      const box = canvas.getBoundingClientRect();
      const i = Math.min(rows - 1, Math.max(0, Math.floor((event.clientY - box.top) / cell)));
      const j = Math.min(cols - 1, Math.max(0, Math.floor((event.clientX - box.left) / cell)));
      readout.textContent = describe(i, j);
      for (const c of cursors) {
        c.hidden = false;
        Object.assign(c.style, { left: `${j * cell}px`, top: `${i * cell}px` });
      }
    });
    return [g.op ? h('span', { class: 'op' }, g.op) : null, figure(g.caption, wrap)];
  });
  const last = grids[grids.length - 1].values.flat();
  const order = last.map((_, k) => k).sort((x, y) => Math.abs(last[y]) - Math.abs(last[x])).slice(0, 8);
  const top = grids.length > 1 ? h('table', { class: 'numbers gd-products' },
    h('thead', {}, h('tr', {}, h('th', {}, '(i, j)'), grids.map((g) => h('th', {}, g.caption)))),
    h('tbody', {}, order.map((k) => {
      const [i, j] = [Math.floor(k / cols), k % cols];
      return h('tr', {}, h('td', {}, `(${i}, ${j})`), grids.map((g) => h('td', { 'data-value': String(g.values[i][j]) }, fmt(g.values[i][j]))));
    }))) : null;
  const all = h('details', { class: 'param-all' }, h('summary', {}, `all ${rows}×${cols} numbers`), numbers());
  return h('div', {},
    h('div', { class: 'gd-row' }, pictures), readout,
    top ? h('p', { class: 'small' }, `The ${order.length} largest products:`) : null, top, all);
}

/** The engine's value, and the page's own sum of the numbers it shows as a check. */
function sumLine(values, value, what) {
  let check = 0;
  for (const v of values.flat()) check += v;
  return h('p', { class: 'gd-total' }, `Σ of ${what} = `, h('strong', { class: 'gd-sum' }, fmt(value)),
    h('span', { class: 'muted small sum-check', 'data-role': 'param-sum-check', 'data-value': String(check) },
      ` (the page’s own sum of the numbers shown: ${fmt(check)})`));
}

// -- max-pool ------------------------------------------------------------------------------

function maxPool(p, ctx, layer) {
  const [c, hh, ww] = p.index;
  const [C, H, W] = layer.input_shape;
  const [, Ho, Wo] = layer.output_shape;
  const { kernel_size: [kh, kw], stride: [sh, sw] } = layer.config;
  const [[ph, pb], [pw, pr]] = layer.padding2d.map((side) => side.map((p) => Math.max(p, 0))); // drawn padding
  const [[top], [left]] = layer.padding2d; // window (i, j) starts at input (i·sh − top, j·sw − left)
  const x = (ctx.layer === 0 ? ctx.trace.input : ctx.trace.layers[ctx.layer - 1].output).data.subarray(c * H * W, (c + 1) * H * W);
  const argmax = ctx.trace.layers[ctx.layer].state.argmax.data.subarray(c * Ho * Wo, (c + 1) * Ho * Wo);
  const wins = new Map();
  for (let i = 0; i < Ho; i++) {
    for (let j = 0; j < Wo; j++) {
      const k = argmax[i * Wo + j];
      const key = `${i * sh + Math.floor(k / kw) - top},${j * sw + (k % kw) - left}`;
      wins.set(key, (wins.get(key) || 0) + 1);
    }
  }
  const [fullW, fullH] = [W + pw + pr, H + ph + pb];
  const size = Math.max(4, Math.min(22, Math.floor(440 / Math.max(fullH, fullW))));
  const limit = Math.max(1e-12, ...Array.from(x, Math.abs));
  const picture = svg('svg', {
    class: 'mask', width: fullW * size, height: fullH * size, role: 'img',
    'aria-label': `channel ${c} of the pool's input with the winner of every window marked`,
  }, svg('rect', { class: 'padding', width: fullW * size, height: fullH * size }, svg('title', {}, 'padding (−∞: never wins)')));
  const plane = svg('g', { transform: `translate(${pw * size} ${ph * size})` }); // input coordinates
  picture.append(plane);
  for (let r = 0; r < H; r++) {
    for (let q = 0; q < W; q++) {
      plane.append(svg('rect', { x: q * size, y: r * size, width: size, height: size, fill: css(diverging(x[r * W + q], limit)), class: 'cell' }));
    }
  }
  if (sh === kh && sw === kw) { // non-overlapping windows: draw their borders
    for (let i = 0; i <= Ho; i++) plane.append(svg('line', { class: 'win-line', x1: -pw * size, x2: (W + pr) * size, y1: (i * sh - top) * size, y2: (i * sh - top) * size }));
    for (let j = 0; j <= Wo; j++) plane.append(svg('line', { class: 'win-line', y1: -ph * size, y2: (H + pb) * size, x1: (j * sw - left) * size, x2: (j * sw - left) * size }));
  }
  for (const [i, j] of p.windows) {
    plane.append(svg('rect', { class: 'chosen-window', x: (j * sw - left) * size, y: (i * sh - top) * size, width: kw * size, height: kh * size }));
  }
  for (const [key, count] of wins) { // a dot per winner; the number of windows it won if more than one
    const [r, q] = key.split(',').map(Number);
    const [cx, cy] = [(q + 0.5) * size, (r + 0.5) * size];
    plane.append(svg('g', { class: 'winner', 'data-role': 'winner', 'data-row': r, 'data-col': q, 'data-count': count },
      svg('title', {}, `x[${c}, ${r}, ${q}] = ${fmt(x[r * W + q])} wins ${count} window${count > 1 ? 's' : ''}`),
      svg('circle', { cx, cy, r: Math.max(1.5, size * (count > 1 ? 0.36 : 0.22)) }),
      count > 1 && size >= 12 ? svg('text', { x: cx, y: cy, 'font-size': size * 0.5 }, String(count)) : null));
  }
  plane.append(svg('rect', { class: 'clicked', x: ww * size, y: hh * size, width: size, height: size }));
  return h('div', {},
    math(`${dL(xAt(p.index))}<mo>=</mo><munder><mo>∑</mo><mrow><mo>(</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>)</mo><mo>:</mo><mtext> winner of window </mtext><mo>(</mo><mi>i</mi><mo>,</mo><mi>j</mi><mo>)</mo><mo>=</mo><mo>(</mo><mn>${hh}</mn><mo>,</mo><mn>${ww}</mn><mo>)</mo></mrow></munder><msub><mi>δ</mi><mrow><mn>${c}</mn><mo>,</mo><mi>i</mi><mo>,</mo><mi>j</mi></mrow></msub>`, true),
    h('p', { class: 'small' }, `The forward pass kept only each ${kh}×${kw} window's maximum (the dots: the argmax mask of channel ${c}, ${C} channels in all). Backward routes each δ to its window's winner only; every other cell gets 0. Ties go to the first cell in reading order. Where windows overlap a cell can win several of them and its gradient adds up (+=, never =).`),
    h('div', { class: 'mask-wrap' }, picture),
    h('p', { class: 'keys small' },
      h('span', { class: 'key key-winner' }), 'winner of a window (2: of two) ',
      ph || pw || pb || pr ? [h('span', { class: 'key key-pad' }), 'padding (−∞) '] : null, h('span', { class: 'key key-clicked' }), `x[${c}, ${hh}, ${ww}] `,
      p.windows.length ? [h('span', { class: 'key key-chosen' }), 'the windows it won'] : null),
    p.windows.length
      ? [h('ul', { class: 'gd-list' }, p.windows.map(([i, j], n) => h('li', { 'data-role': 'grad-product', 'data-value': String(p.deltas[n]) },
        `window (${i}, ${j}): its maximum is x[${c}, ${hh}, ${ww}], so it sends δ[${c}, ${i}, ${j}] = ${fmt(p.deltas[n])}`))),
        math(`${dL(xAt(p.index))}<mo>=</mo>${p.deltas.map((d) => mn(d, true)).join('<mo>+</mo>')}<mo>=</mo>${mn(p.value)}`, true)]
      : h('p', { class: 'gd-note' }, `x[${c}, ${hh}, ${ww}] is the maximum of no window, so no gradient reaches it: dL/dx = 0.`));
}

// -- element-wise, dense, the rest ----------------------------------------------------------

function elementwise(p, ctx, layer) {
  const x = `<mi>x</mi>`;
  return h('div', {},
    math(`${dL(x)}<mo>=</mo><mi>δ</mi><mo>·</mo><mi>f′</mi><mo>(</mo>${x}<mo>)</mo><mo>=</mo>${mn(p.delta, true)}<mo>·</mo>${mn(p.local_derivative, true)}<mo>=</mo>${mn(p.value)}`, true),
    h('table', { class: 'numbers gd-facts' }, h('tbody', {},
      factRow('input x', p.input), factRow('δ = dL/dy from above', p.delta),
      factRow('f′(x), the local derivative', p.local_derivative), factRow('dL/dx = δ · f′(x)', p.value))),
    h('p', { class: 'small' }, ELEMENTWISE[p.operation] || `${layer.label} works value by value, so the gradient is δ times its own local derivative.`),
    p.operation === 'relu'
      ? h('p', { class: 'gd-note' }, p.input > 0 ? `x = ${fmt(p.input)} > 0: the gradient passes unchanged.` : `x = ${fmt(p.input)} ≤ 0: the gradient is blocked.`)
      : null);
}

function factRow(name, value, role) {
  return h('tr', {}, h('th', { scope: 'row' }, name), h('td', { 'data-value': String(value), 'data-role': role }, fmt(value)));
}

function dense(p, ctx, layer) {
  const k = p.index[0];
  const order = p.products.map((v, o) => o).sort((a, b) => Math.abs(p.products[b]) - Math.abs(p.products[a]));
  const top = order.slice(0, 8);
  const panel = parameterPanel(ctx, layer, { parameter: 'weight', index: [top[0], k] });
  const pickable = panel ? (o) => ({
    class: 'pickable', tabindex: 0, title: `the gradient of W[${o}, ${k}]`,
    onclick: () => panel.choose({ parameter: 'weight', index: [o, k] }),
    onkeydown: (event) => (event.key === 'Enter' ? panel.choose({ parameter: 'weight', index: [o, k] }) : null),
  }) : () => ({});
  return h('div', {},
    math(`${dL(`<msub><mi>x</mi><mn>${k}</mn></msub>`)}<mo>=</mo><munder><mo>∑</mo><mi>o</mi></munder><msub><mi>δ</mi><mi>o</mi></msub><mo>·</mo><msub><mi>W</mi><mrow><mi>o</mi><mo>,</mo><mn>${k}</mn></mrow></msub><mo>=</mo>${mn(p.value)}`, true),
    h('p', { class: 'small' }, `Input ${k} fed every one of the ${p.products.length} outputs through the weights W[o, ${k}], so it collects each output's δ through that same weight. The ${top.length} largest products:`),
    h('table', { class: 'numbers gd-products' },
      h('thead', {}, h('tr', {}, h('th', {}, 'o'), h('th', {}, 'δₒ'), h('th', {}, `W[o, ${k}]`), h('th', {}, 'δₒ · W'))),
      h('tbody', {}, top.map((o) => h('tr', { 'data-out': o, ...pickable(o) },
        h('td', {}, String(o)), h('td', {}, fmt(p.deltas[o])), h('td', {}, fmt(p.weights[o])),
        h('td', { 'data-role': 'grad-product', 'data-value': String(p.products[o]) }, fmt(p.products[o])))))),
    h('p', { class: 'gd-total' }, order.length > top.length ? `… + ${order.length - top.length} smaller products; all ${order.length} add up to ` : 'They add up to ', h('strong', {}, fmt(p.value))),
    panel ? h('section', { class: 'gd-params' },
      h('h4', {}, 'The same δ trains this layer'),
      math(`${dL('<msub><mi>W</mi><mrow><mi>i</mi><mo>,</mo><mi>j</mi></mrow></msub>')}<mo>=</mo><msub><mi>x</mi><mi>j</mi></msub><mo>·</mo><msub><mi>δ</mi><mi>i</mi></msub>`
        + (layer.config.bias ? `<mspace width="2em"/>${dL('<msub><mi>b</mi><mi>i</mi></msub>')}<mo>=</mo><msub><mi>δ</mi><mi>i</mi></msub>` : ''), true),
      panel.element) : null);
}

/** Flatten: x[c, h, w] went to y[k], k = (c·H + h)·W + w, and its gradient comes back from there. */
function flatten(p, ctx, layer) {
  if (p.index.length !== 3) return valueOnly(p, ctx, layer);
  const [, H, W] = layer.input_shape;
  const [c, hh, ww] = p.index;
  const k = (c * H + hh) * W + ww;
  return h('div', {},
    h('p', {}, `${VALUE_ONLY.flatten} Here k = (c·H + h)·W + w = (${c}·${H} + ${hh})·${W} + ${ww} = ${k}.`),
    math(`${dL(xAt(p.index))}<mo>=</mo>${dL(`<mi>y</mi><mo>[</mo><mn>${k}</mn><mo>]</mo>`)}<mo>=</mo>${mn(p.value)}`, true));
}

function valueOnly(p, ctx, layer) {
  return h('div', {},
    h('p', {}, VALUE_ONLY[p.operation] || `The engine gives only the value for ${layer.label}'s backward pass.`),
    math(`${dL(xAt(p.index))}<mo>=</mo>${mn(p.value)}`, true));
}

const RENDERERS = { convolution, 'max-pool': maxPool, dense, flatten };
