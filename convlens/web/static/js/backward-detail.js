// How one value dL/dx[index] of a layer's input was computed by its backward pass, drawn
// from the /api/explain payload by the layer's `operation`: the full convolution with the
// rotated kernel, the max-pool's argmax mask, δ·f′(x), Σ δ·W, or just the value.
import { css, diverging, fmt, paintValues } from './colors.js';
import { dL, h, math, mn, numberGrid, shapeText, short, svg } from './backward-ui.js';

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

/** The #grad-detail element for `payload` of layer `ctx.layer` ({model, trace, layer}). */
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
  let featured = sums.reduce((best, v, o) => (Math.abs(v) > Math.abs(sums[best]) ? o : best), 0);
  const inside = h('div', { class: 'gd-inside' });
  const chips = h('div', { class: 'gd-chips', role: 'group', 'aria-label': 'output channels: pick one to look inside' });
  const draw = () => {
    chips.replaceChildren(...sums.map((v, o) => h('button', {
      type: 'button', class: o === featured ? 'chip on' : 'chip', 'aria-pressed': String(o === featured),
      'data-role': 'grad-channel-sum', 'data-channel': o, 'data-value': String(v),
      style: `border-color:${css(diverging(v, Math.max(...sums.map(Math.abs))))}`,
      onclick: () => { featured = o; draw(); },
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
    parameterGradients(layer));
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
        fieldPicture(field, hh, ww, [kh, kw], [dh, dw]),
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
function fieldPicture(field, hh, ww, [kh, kw], [dh, dw]) {
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
  return h('div', { class: 'field-wrap', role: 'img', 'aria-label': `delta spread and padded, ${field.rows} by ${field.cols}, window at row ${hh}, column ${ww}` }, canvas, overlay);
}

function figure(caption, content) {
  return h('figure', { class: 'gd-figure' }, content, h('figcaption', {}, caption));
}

/** The same δ trains the layer: dL/dW as a correlation of the input with δ, dL/db = Σ δ. */
function parameterGradients(layer) {
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
    cfg.bias ? h('p', { class: 'small' }, 'dL/db: every output position adds its δ to the bias gradient.') : null);
}

// -- max-pool ------------------------------------------------------------------------------

function maxPool(p, ctx, layer) {
  const [c, hh, ww] = p.index;
  const [C, H, W] = layer.input_shape;
  const [, Ho, Wo] = layer.output_shape;
  const { kernel_size: [kh, kw], stride: [sh, sw], padding: [ph, pw] } = layer.config;
  const x = (ctx.layer === 0 ? ctx.trace.input : ctx.trace.layers[ctx.layer - 1].output).data.subarray(c * H * W, (c + 1) * H * W);
  const argmax = ctx.trace.layers[ctx.layer].state.argmax.data.subarray(c * Ho * Wo, (c + 1) * Ho * Wo);
  const wins = new Map();
  for (let i = 0; i < Ho; i++) {
    for (let j = 0; j < Wo; j++) {
      const k = argmax[i * Wo + j];
      const key = `${i * sh + Math.floor(k / kw) - ph},${j * sw + (k % kw) - pw}`;
      wins.set(key, (wins.get(key) || 0) + 1);
    }
  }
  const size = Math.max(4, Math.min(22, Math.floor(440 / Math.max(H + 2 * ph, W + 2 * pw))));
  const limit = Math.max(1e-12, ...Array.from(x, Math.abs));
  const picture = svg('svg', {
    class: 'mask', width: (W + 2 * pw) * size, height: (H + 2 * ph) * size, role: 'img',
    'aria-label': `channel ${c} of the pool's input with the winner of every window marked`,
  }, svg('rect', { class: 'padding', width: (W + 2 * pw) * size, height: (H + 2 * ph) * size }, svg('title', {}, 'padding (−∞: never wins)')));
  const plane = svg('g', { transform: `translate(${pw * size} ${ph * size})` }); // input coordinates
  picture.append(plane);
  for (let r = 0; r < H; r++) {
    for (let q = 0; q < W; q++) {
      plane.append(svg('rect', { x: q * size, y: r * size, width: size, height: size, fill: css(diverging(x[r * W + q], limit)), class: 'cell' }));
    }
  }
  if (sh === kh && sw === kw) { // non-overlapping windows: draw their borders
    for (let i = 0; i <= Ho; i++) plane.append(svg('line', { class: 'win-line', x1: -pw * size, x2: (W + pw) * size, y1: (i * sh - ph) * size, y2: (i * sh - ph) * size }));
    for (let j = 0; j <= Wo; j++) plane.append(svg('line', { class: 'win-line', y1: -ph * size, y2: (H + ph) * size, x1: (j * sw - pw) * size, x2: (j * sw - pw) * size }));
  }
  for (const [i, j] of p.windows) {
    plane.append(svg('rect', { class: 'chosen-window', x: (j * sw - pw) * size, y: (i * sh - ph) * size, width: kw * size, height: kh * size }));
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
      ph || pw ? [h('span', { class: 'key key-pad' }), 'padding (−∞) '] : null, h('span', { class: 'key key-clicked' }), `x[${c}, ${hh}, ${ww}] `,
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

function factRow(name, value) {
  return h('tr', {}, h('th', { scope: 'row' }, name), h('td', { 'data-value': String(value) }, fmt(value)));
}

function dense(p) {
  const k = p.index[0];
  const order = p.products.map((v, o) => o).sort((a, b) => Math.abs(p.products[b]) - Math.abs(p.products[a]));
  const top = order.slice(0, 8);
  return h('div', {},
    math(`${dL(`<msub><mi>x</mi><mn>${k}</mn></msub>`)}<mo>=</mo><munder><mo>∑</mo><mi>o</mi></munder><msub><mi>δ</mi><mi>o</mi></msub><mo>·</mo><msub><mi>W</mi><mrow><mi>o</mi><mo>,</mo><mn>${k}</mn></mrow></msub><mo>=</mo>${mn(p.value)}`, true),
    h('p', { class: 'small' }, `Input ${k} fed every one of the ${p.products.length} outputs through the weights W[o, ${k}], so it collects each output's δ through that same weight. The ${top.length} largest products:`),
    h('table', { class: 'numbers gd-products' },
      h('thead', {}, h('tr', {}, h('th', {}, 'o'), h('th', {}, 'δₒ'), h('th', {}, `W[o, ${k}]`), h('th', {}, 'δₒ · W'))),
      h('tbody', {}, top.map((o) => h('tr', {},
        h('td', {}, String(o)), h('td', {}, fmt(p.deltas[o])), h('td', {}, fmt(p.weights[o])),
        h('td', { 'data-role': 'grad-product', 'data-value': String(p.products[o]) }, fmt(p.products[o])))))),
    h('p', { class: 'gd-total' }, order.length > top.length ? `… + ${order.length - top.length} smaller products; all ${order.length} add up to ` : 'They add up to ', h('strong', {}, fmt(p.value))));
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
