// The convolution views: the elastic view (each input channel, its kernel slice, the
// per-channel result, then sum + bias → the output map) and the formula view (the kernel
// sliding over the input, with the engine's numbers for the current position).
import { absMax, fmt } from './colors.js';
import {
  MapView, activations, brightest, channelName, fill, fitOver, h, indexed, inputScale, kernelView, limitFor, links, mathml,
  nestedAbsMax, numberTable, param, svg,
} from './forward-maps.js';
import { inputChannel } from './colors.js';
import { scanner } from './forward-scan.js';

const MOST_BLOCKS = 48; // channel blocks in the formula view; the rest are summed in one line
const FEW_CHANNELS = 4; // up to this many input channels the elastic view stacks them as rows
const DIGITS = 3; // significant digits inside the channel blocks (sums and totals get 4)

/**
 * The window geometry of a conv or pool layer, read from one explanation: stride, dilation,
 * kernel, and the padding the engine applied (top/left exactly; bottom/right as far as the
 * kernel reaches).
 */
export function windowGeometry(config, payload, [inH, inW], [outH, outW]) {
  const [i, j] = payload.index.slice(-2);
  const [sh, sw] = config.stride;
  const [dh, dw] = config.dilation || [1, 1];
  const [kh, kw] = config.kernel_size;
  const top = i * sh - payload.rows[0];
  const left = j * sw - payload.cols[0];
  return {
    sh, sw, dh, dw, kh, kw, top, left,
    bottom: Math.max(0, (outH - 1) * sh + (kh - 1) * dh - top - (inH - 1)),
    right: Math.max(0, (outW - 1) * sw + (kw - 1) * dw - left - (inW - 1)),
  };
}

/** Marks for the input cells one window reads: its outline, or each tap when dilated. */
export function windowMarks({ rows, cols }) {
  const solid = (list) => list.every((v, k) => k === 0 || v === list[k - 1] + 1);
  return solid(rows) && solid(cols) ? [{ r: rows[0], c: cols[0], h: rows.length, w: cols.length }]
    : rows.flatMap((r) => cols.map((c) => ({ r, c })));
}

/**
 * On a map whose cells are only a few pixels, a faint band along the window's rows and one
 * along its columns, so that the eye finds the small window at their crossing.
 */
export function windowBands({ rows, cols }, view) {
  const cell = parseFloat(view.element.style.width) / view.fullCols; // its size as built: no layout forced
  if (cell >= 4) return [];
  const [r0, c0] = [rows[0], cols[0]];
  const [tall, wide] = [rows[rows.length - 1] - r0 + 1, cols[cols.length - 1] - c0 + 1];
  return [
    { r: r0, c: -view.pad.left, h: tall, w: view.fullCols },
    { r: -view.pad.top, c: c0, h: view.fullRows, w: wide },
  ];
}

/** MathML for the input that tap (a, b) reads for output (i, j): x_p[c, i·s + a·d, j·s + b·d]. */
export function tapInput({ stride: [sh, sw], dilation: [dh, dw] = [1, 1] }) {
  const times = (n) => (n === 1 ? '' : `<mo>·</mo><mn>${n}</mn>`);
  const reach = (i, s, k, d) => `<mrow><mi>${i}</mi>${times(s)}<mo>+</mo><mi>${k}</mi>${times(d)}</mrow>`;
  return indexed('<msub><mi>x</mi><mi>p</mi></msub>', 'c', reach('i', sh, 'a', dh), reach('j', sw, 'b', dw));
}

/** y[o, i, j] = b[o] + Σ_c Σ_a Σ_b W[o, c, a, b] · x_p[c, i·s + a·d, j·s + b·d], with this layer's numbers. */
function generalFormula(config, inChannels) {
  const [kh, kw] = config.kernel_size;
  const flip = (n, v) => `<mrow><mn>${n}</mn><mo>−</mo><mi>${v}</mi></mrow>`;
  const [a, b] = config.mode === 'convolution' ? [flip(kh - 1, 'a'), flip(kw - 1, 'b')] : ['a', 'b'];
  const sum = (v, top) => `<munderover><mo>∑</mo><mrow><mi>${v}</mi><mo>=</mo><mn>0</mn></mrow><mn>${top}</mn></munderover>`;
  return mathml(`<mrow>${indexed('y', 'o', 'i', 'j')}<mo>=</mo>${indexed('b', 'o')}<mo>+</mo>
    ${sum('c', inChannels - 1)}${sum('a', kh - 1)}${sum('b', kw - 1)}
    ${indexed('W', 'o', 'c', a, b)}<mo>·</mo>${tapInput(config)}</mrow>`);
}

/** The layer's hyperparameters as chips, with what the anchor and mode mean. */
function hyperparameters(config) {
  const pair = (p) => p.join('×');
  const padding = typeof config.padding === 'string' ? `“${config.padding}”` : JSON.stringify(config.padding);
  return h('div', { class: 'params' },
    param('kernel', pair(config.kernel_size)),
    param('stride', pair(config.stride)),
    param('padding', padding, 'zeros around the input; hatched cells below'),
    param('dilation', pair(config.dilation), 'the gap between kernel taps'),
    param('anchor', `(${config.anchor.join(', ')})`,
      'the kernel element (dot) that sits on the input pixel an output pixel belongs to; it decides how “same” padding is split'),
    param('mode', config.mode, config.mode === 'convolution'
      ? 'the stored kernel is rotated 180° before it slides' : 'the kernel slides as stored (cross-correlation, like PyTorch)'),
    param('bias', config.bias ? 'yes' : 'no'));
}

export function convolution({ store, model, trace, layer, channel: o, memory }) {
  const info = model.layers[layer];
  const { config } = info;
  const [C, H, W] = info.input_shape;
  const [, outH, outW] = info.output_shape;
  const arrays = activations(trace);
  const [x, y] = [arrays[layer], arrays[layer + 1]];
  const outSize = outH * outW;
  // the views show the effective kernel: in convolution mode the anchor moves with the rotation
  const [kh, kw] = config.kernel_size;
  const [ay, ax] = config.anchor;
  const anchor = config.mode === 'convolution' ? [kh - 1 - ay, kw - 1 - ax] : [ay, ax];
  memory.position = memory.position || brightest(y, o); // start where this map responds most
  /** "c = 0", or "red · c = 0" where the layer reads the picture's named channels. */
  const channelTitle = (c) => {
    const named = layer === 0 && inputChannel(C, c);
    return named ? `${named.name} · c = ${c}` : `c = ${c}`;
  };

  const elastic = h('div', { class: 'elastic' }, h('p', { class: 'muted', text: 'Loading the kernel…' }));
  const formula = h('div', { class: 'formula-view', 'aria-live': 'polite' });
  let parts = null; // the elastic view, built from the first explanation (it tells the padding)

  const scan = scanner({
    store, layer, channel: o, rows: outH, cols: outW, memory,
    show: (payload) => {
      parts = parts || buildElastic(payload);
      parts.inputs.forEach((view) => {
        view.mark('band', windowBands(payload, view)); // under the window's outline
        view.mark('halo', windowMarks(payload), 'window-halo');
        view.mark('window', windowMarks(payload));
      });
      const [i, j] = payload.index.slice(1);
      [...parts.responses, parts.output].forEach((view) => view.mark('current', [{ r: i, c: j }]));
      renderFormula(payload);
    },
  });

  function buildElastic(payload) {
    const g = windowGeometry(config, payload, [H, W], [outH, outW]);
    const pad = { top: Math.max(0, g.top), bottom: g.bottom, left: Math.max(0, g.left), right: g.right }; // cropping draws none
    const stacked = C <= FEW_CHANNELS; // few channels: one row each, the sum to their right
    const room = elastic.clientWidth || 1160; // the view is on the page by the time an explanation arrives
    const size = stacked ? Math.max(Math.min(120, Math.floor(440 / C)), Math.min(200, 3 * Math.max(H, W)))
      : Math.max(36, Math.min(104, Math.floor(room / C) - 16));
    const kernelLimit = nestedAbsMax(payload.kernel);
    // each input channel's share of the output map, as the engine computed it
    const responses = payload.channel_shares.map((share) => Float32Array.from(share.flat()));
    const responseLimit = Math.max(...responses.map((r) => absMax(r)));
    const columns = [];
    const inputs = [];
    const responseViews = [];
    for (let c = 0; c < C; c++) {
      // the first layer reads the picture: its channels in their own colours, by their names
      const input = new MapView({ rows: H, cols: W, pad, size, label: `input ${channelName(C, c, layer === 0)}` });
      input.paintData(x.data, c * H * W, H * W, limitFor(store, layer, c), layer === 0 ? inputScale(x, c) : null);
      const response = new MapView({ rows: outH, cols: outW, size, label: `input channel ${c} ⋆ kernel slice ${c}` });
      response.paintData(responses[c], 0, outSize, responseLimit).onCell((cell) => scan.hover(cell), scan.position);
      const kernel = kernelView(payload.kernel[c], kernelLimit, Math.min(size, 22 * kw), anchor);
      inputs.push(input);
      responseViews.push(response);
      columns.push(h('div', {
        class: 'elastic-channel', 'data-channel': c,
        onpointerenter: () => focusBlock(c), onpointerleave: () => focusBlock(null),
      }, h('span', { class: 'channel-name', text: channelTitle(c) }), input.element, h('span', { class: 'op', text: '⋆' }),
      kernel.element, h('span', { class: 'op', text: '=' }), response.element));
    }
    const output = new MapView({ rows: outH, cols: outW, size: 180, label: `output channel ${o}: hover to move the kernel` });
    output.paintData(y.data, o * outSize, outSize, limitFor(store, layer + 1, o));
    output.onCell((cell) => scan.hover(cell), scan.position);
    const sigma = h('div', { class: 'sigma', title: 'add the per-channel results' }, 'Σ');
    const wires = svg('svg', { class: 'wires', 'aria-hidden': 'true' });
    elastic.classList.toggle('stacked', stacked);
    elastic.replaceChildren(wires,
      h('p', {
        class: 'muted fine',
        text: `Each ${stacked ? 'row' : 'column'}: input channel x[c] ⋆ its kernel slice W[${o}, c] = that channel’s share.`
          + ` The ${C} share${C > 1 ? 's are' : ' is'} summed and the bias added: output channel ${o}.`,
      }),
      h('div', { class: 'elastic-channels' }, columns),
      h('div', { class: 'sum-row' }, sigma, h('span', { class: 'op', text: '+' }),
        h('span', { class: 'bias-chip', text: `b[${o}] = ${fmt(payload.bias)}` }), h('span', { class: 'op big', text: '→' }),
        h('figure', { class: 'elastic-output' }, output.element,
          h('figcaption', {}, h('b', { text: `output channel ${o}` }), ` · ${outH}×${outW} · hover it to move the kernel`),
          scan.controls)));
    requestAnimationFrame(() => {
      fitOver(wires, elastic);
      const pairs = responseViews.map((r) => [r.element, sigma]);
      wires.replaceChildren(...(stacked ? links(elastic, pairs) : links(elastic, pairs, 'bottom', 'top')));
    });
    return { inputs, responses: responseViews, output };
  }

  const focusBlock = (c) => {
    for (const block of formula.querySelectorAll('.channel-block')) {
      block.classList.toggle('focus', Number(block.dataset.channel) === c);
    }
  };

  function renderFormula(payload) {
    const [, i, j] = payload.index;
    formula.dataset.position = payload.index.join(',');
    const sums = payload.channel_sums;
    const order = sums.map((_, c) => c);
    const shown = C > MOST_BLOCKS // the channels that add the most, in channel order
      ? order.sort((a, b) => Math.abs(sums[b]) - Math.abs(sums[a])).slice(0, MOST_BLOCKS).sort((a, b) => a - b)
      : order;
    const pad = { class: 'pad', style: null, title: 'padding: outside the image, read as 0' };
    const padded = (a, b) => (payload.inside[a][b] ? {} : pad);
    const anchored = (a, b) => (a === anchor[0] && b === anchor[1] ? { class: 'anchor', title: 'the anchor' } : {});
    const [inputLimit, kernelLimit, productLimit] = [payload.inputs, payload.kernel, payload.products].map(nestedAbsMax);
    const blocks = shown.map((c) => h('div', { class: 'channel-block', 'data-channel': c },
      h('span', { class: 'block-title', text: channelTitle(c) }),
      numberTable(payload.inputs[c], 'input', inputLimit, padded, DIGITS),
      h('span', { class: 'op', text: '⊙' }),
      numberTable(payload.kernel[c], 'weight', kernelLimit, anchored, DIGITS),
      h('span', { class: 'op', text: '=' }),
      numberTable(payload.products[c], 'product', productLimit, undefined, DIGITS),
      h('span', { class: 'op', text: 'Σ' }),
      h('span', { class: 'channel-sum', 'data-role': 'channel-sum', text: fmt(sums[c]) })));
    const hidden = C - shown.length;
    const rest = hidden && sums.filter((_, c) => !shown.includes(c)).reduce((a, b) => a + b, 0);
    const total = sums.reduce((a, b) => a + b, 0);
    fill(formula,
      generalFormula(config, C),
      h('p', { class: 'muted fine' },
        `At output (${i}, ${j}) the kernel reads input rows ${payload.rows.join(', ')}`,
        ` and columns ${payload.cols.join(', ')}`,
        payload.inside.flat().every(Boolean) ? '.' : '; hatched cells lie in the padding and count as 0.',
        config.mode === 'convolution' ? ' Convolution mode: the kernel shown is the stored one rotated 180°.' : ''),
      h('div', { class: 'channel-blocks' }, blocks),
      hidden ? h('p', { class: 'muted fine', text: `… and ${hidden} more channels, whose sums add ${fmt(rest)}.` }) : null,
      h('div', { class: 'conv-total' },
        mathml(`<mrow><munder><mo>∑</mo><mi>c</mi></munder><mtext>&#8201;channel sums</mtext></mrow>`, 'inline'),
        h('span', { class: 'num', text: fmt(total) }), h('span', { class: 'op', text: '+' }),
        mathml(indexed('b', o), 'inline'),
        h('span', { class: 'num', id: 'conv-bias', text: fmt(payload.bias) }), h('span', { class: 'op', text: '=' }),
        mathml(indexed('y', o, i, j), 'inline'),
        h('span', { class: 'num result', id: 'conv-value', text: fmt(payload.value) })));
  }

  const element = h('div', { class: 'conv-view' },
    hyperparameters(config),
    h('section', { class: 'view-part' },
      h('h3', { text: 'Elastic view · every input channel meets its own kernel slice' }), elastic),
    h('section', { class: 'view-part' },
      h('h3', { text: 'Formula view · the numbers at the current position' }), formula));
  return { element, destroy: scan.destroy, ready: scan.ready };
}
